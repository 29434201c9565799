//go:build unix

package main

import (
	"os"
	"syscall"
)

// run replaces this process with go-task, so go-task receives the signals
// sent to it (go tool forwards them) and its exit status is the command's.
// It returns only if the exec failed.
func run(path string, args []string) error {
	return syscall.Exec(path, append([]string{path}, args...), os.Environ())
}
