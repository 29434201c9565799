// Command task runs go-task (https://taskfile.dev) on natter's Taskfile.yml.
// It is natter's tool dependency, so from anywhere in the repository
//
//	go tool task test     # what CI runs (.ci/run)
//	go tool task --list   # the other tasks
//
// work with nothing to install but Go.
//
// go-task itself is pinned in its own module, tools/gotask, so that its
// dependencies (cloud SDKs, gRPC, OpenTelemetry, terminal UI libraries) stay
// out of natter's module graph: natter's go.mod and go.sum hold only what its
// binaries and tests use. This command asks the go command to build that
// pinned go-task (`go tool -C tools/gotask -n task` builds it, or finds it in
// the build cache, and prints where the executable is) and then runs it in the
// current directory with the same arguments, in place of this process where
// the system allows it, so signals and the exit status are go-task's own.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// gotaskDir is the module pinning go-task, relative to the repository root.
const gotaskDir = "tools/gotask"

func main() {
	dir, err := findModule()
	if err != nil {
		fatal(err)
	}
	// "go" is the toolchain that runs this tool: go tool puts its GOROOT/bin
	// first in PATH.
	build := exec.Command("go", "tool", "-C", dir, "-n", "task")
	build.Stderr = os.Stderr // go: downloading ..., build errors
	out, err := build.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.ExitCode())
		}
		fatal(err)
	}
	path := strings.TrimSpace(string(out))
	if _, err := os.Stat(path); err != nil {
		fatal(fmt.Errorf("go tool -n task printed %q, not the go-task executable: %w", path, err))
	}
	fatal(run(path, os.Args[1:]))
}

// findModule returns the directory of the go-task module: gotaskDir under
// the nearest directory, from the working directory up, that has it.
func findModule() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; {
		dir := filepath.Join(d, filepath.FromSlash(gotaskDir))
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no %s/go.mod in %s or any directory above it", gotaskDir, wd)
		}
		d = parent
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "go tool task:", err)
	os.Exit(1)
}
