package natsconf

import "encoding/json"

// DisconnectEvent is the body an edge publishes on EventDisconnect: the rooms
// the closed connection was subscribed to, so the rooms handler can take it
// out of them. The connection, user and edge are in the headers.
type DisconnectEvent struct {
	Rooms []string `json:"rooms"`
}

// Encode returns the event's body.
func (e DisconnectEvent) Encode() []byte {
	b, _ := json.Marshal(e)
	return b
}

// DecodeDisconnect reads a disconnect event body (an empty body: no rooms).
func DecodeDisconnect(data []byte) (DisconnectEvent, error) {
	var e DisconnectEvent
	if len(data) == 0 {
		return e, nil
	}
	err := json.Unmarshal(data, &e)
	return e, err
}
