package wstest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
)

// Command is the binary of the main package in the test's working
// directory, built once per test binary run by the first test that needs it.
// It is built with -race when the test binary is, so the build cache is
// reused and the process is checked for races too. Call Remove from
// TestMain after the tests ran.
type Command struct {
	// Name names the binary file.
	Name string

	once sync.Once
	dir  string
	path string
	skip string // why there is no binary to test, if there is none
	err  error
}

// Path returns the binary's path, building it on the first call. A test is
// skipped when there is no go command, and fails when the build does.
func (c *Command) Path(t testing.TB) string {
	t.Helper()
	c.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			c.skip = "no go command to build the " + c.Name + " binary with"
			return
		}
		if c.dir, c.err = os.MkdirTemp("", "natter-"+c.Name+"-bin-"); c.err != nil {
			return
		}
		bin := filepath.Join(c.dir, c.Name)
		args := []string{"build", "-o", bin}
		if raceEnabled() {
			args = append(args, "-race")
		}
		if out, err := exec.Command(goBin, append(args, ".")...).CombinedOutput(); err != nil {
			c.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		c.path = bin
	})
	switch {
	case c.skip != "":
		t.Skip(c.skip)
	case c.err != nil:
		t.Fatal(c.err)
	}
	return c.path
}

// Remove deletes the built binary.
func (c *Command) Remove() {
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
}

// raceEnabled reports whether this test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// Environ is the environment without NATTER_ variables, so the flags a test
// passes are a process's whole configuration.
func Environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NATTER_") {
			env = append(env, kv)
		}
	}
	return env
}

// Output collects a process's output; it may be read while the process
// writes to it.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

// String returns what was written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}
