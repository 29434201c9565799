package natsconf_test

import (
	"errors"
	"fmt"

	"natter/natsconf"
)

func ExampleSubjects() {
	subj := natsconf.MustSubjects("im")
	room, _ := subj.Room("team:red")
	fmt.Println(room)

	// A name that would widen a subscription never becomes a subject.
	_, err := subj.User(">")
	fmt.Println(errors.Is(err, natsconf.ErrBadName))

	fmt.Println(subj.Parse(room))
	// Output:
	// im.room.team:red
	// true
	// room team:red
}
