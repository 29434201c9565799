package auth_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"natter/edge/auth"
)

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
