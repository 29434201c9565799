package natsconf

import "context"

// CountAfter returns how many messages on subject have a sequence greater
// than after, with one batch direct get of a single message (whose end of
// batch reports how many more there are, Nats-Num-Pending): one request and
// at most one message read, however many there are.
func (r *Reader) CountAfter(ctx context.Context, subject string, after uint64) (uint64, error) {
	if after == ^uint64(0) {
		return 0, nil
	}
	m, count, err := r.probe(ctx, subject, after+1)
	if err != nil || m == nil {
		return 0, err
	}
	return count, nil
}
