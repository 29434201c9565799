package natsconf

import (
	"encoding/binary"
	"errors"
)

// HeaderBatch marks a command request that carries several commands of one
// connection, and its reply, which carries one result per command, in the
// same order. The edge sends commands that queue up behind one in flight as
// one batch; the handler runtime applies them in order.
const HeaderBatch = "Natter-Batch"

// ErrBadBatch is returned for a batch body that is not well formed.
var ErrBadBatch = errors.New("natsconf: malformed batch")

// MaxBatch is the most commands one batch carries.
const MaxBatch = 64

// AppendBatchItem appends one length-prefixed item to a batch body. A batch
// request holds one item per command (the client's frame as received); a
// batch reply holds three items per command: the control operation, its
// room, and the reply frame.
func AppendBatchItem(buf, item []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(item)))
	return append(buf, item...)
}

// SplitBatch returns the items of a batch body. The items alias body.
func SplitBatch(body []byte) ([][]byte, error) {
	var items [][]byte
	for len(body) > 0 {
		n, k := binary.Uvarint(body)
		if k <= 0 || n > uint64(len(body)-k) {
			return nil, ErrBadBatch
		}
		body = body[k:]
		items = append(items, body[:n:n])
		body = body[n:]
		if len(items) > 3*MaxBatch {
			return nil, ErrBadBatch
		}
	}
	return items, nil
}

// BatchResult is the outcome of one command of a batch: the reply frame and
// the control operation (with its room) the edge applies before writing it.
type BatchResult struct {
	Op, Room string
	Frame    []byte
}

// AppendBatchResult appends r to a batch reply body.
func AppendBatchResult(buf []byte, r BatchResult) []byte {
	buf = AppendBatchItem(buf, []byte(r.Op))
	buf = AppendBatchItem(buf, []byte(r.Room))
	return AppendBatchItem(buf, r.Frame)
}

// SplitBatchResults decodes a batch reply body.
func SplitBatchResults(body []byte) ([]BatchResult, error) {
	items, err := SplitBatch(body)
	if err != nil {
		return nil, err
	}
	if len(items)%3 != 0 {
		return nil, ErrBadBatch
	}
	out := make([]BatchResult, 0, len(items)/3)
	for i := 0; i < len(items); i += 3 {
		out = append(out, BatchResult{Op: string(items[i]), Room: string(items[i+1]), Frame: items[i+2]})
	}
	return out, nil
}
