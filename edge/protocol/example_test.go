package protocol_test

import (
	"errors"
	"fmt"

	"natter/edge/protocol"
)

func ExampleDecodeCommand() {
	cmd, err := protocol.DecodeCommand([]byte(`{"type":"send","room":"lobby","id":"7","body":{"text":"hi"}}`))
	fmt.Println(cmd.Type, cmd.Room, cmd.ID, string(cmd.Body), err)

	_, err = protocol.DecodeCommand([]byte(`["not","an","object"]`))
	var pe *protocol.Error
	fmt.Println(errors.As(err, &pe), pe.Code)
	// Output:
	// send lobby 7 {"text":"hi"} <nil>
	// true bad_frame
}

func ExampleWithSeq() {
	stored := protocol.Encode(protocol.Message{Type: protocol.FrameMsg, Room: "lobby", From: "alice", TS: 1764111111000, Body: []byte(`"hi"`)})
	fmt.Println(string(protocol.WithSeq(stored, 42)))
	// Output:
	// {"seq":42,"type":"msg","room":"lobby","from":"alice","ts":1764111111000,"body":"hi"}
}

func ExampleEncodeError() {
	fmt.Println(string(protocol.EncodeError("3", protocol.Errorf(protocol.CodeNotMember, "join the room first"))))
	fmt.Println(string(protocol.EncodeError("", errors.New("disk on fire"))))
	// Output:
	// {"type":"error","id":"3","code":"not_member","message":"join the room first"}
	// {"type":"error","code":"internal","message":"internal error"}
}
