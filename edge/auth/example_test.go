package auth_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"natter/edge/auth"
)

func ExampleRoomAllowed() {
	patterns := []string{"lobby", "team-*"}
	for _, room := range []string{"lobby", "team-red", "kitchen"} {
		fmt.Println(room, auth.RoomAllowed(patterns, room))
	}
	fmt.Println("nil patterns:", auth.RoomAllowed(nil, "kitchen"))
	fmt.Println("empty patterns:", auth.RoomAllowed([]string{}, "lobby"))
	// Output:
	// lobby true
	// team-red true
	// kitchen false
	// nil patterns: true
	// empty patterns: false
}

func ExampleDevelopment() {
	var a auth.Authenticator = auth.Development{}
	for _, target := range []string{"/ws?user=alice", "/ws?id=bob", "/ws?user=a.b"} {
		id, err := a.Authenticate(httptest.NewRequest(http.MethodGet, target, nil))
		switch {
		case errors.Is(err, auth.ErrBadUser):
			fmt.Println(target, "-> 400")
		case errors.Is(err, auth.ErrUnauthorized):
			fmt.Println(target, "-> 401")
		default:
			fmt.Println(target, "->", id.User, id.Broadcast)
		}
	}
	// Output:
	// /ws?user=alice -> alice true
	// /ws?id=bob -> bob true
	// /ws?user=a.b -> 400
}
