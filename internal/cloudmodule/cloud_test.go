// Package cloudmodule runs the tests of the nested module cloud from this
// module's `go test ./...`, in a test binary of its own, so that the
// build of the Cloud client's packages gets its own time budget.
package cloudmodule

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestCloudModule runs the tests of the nested module cloud (the session
// store on the Cloud client libraries, and aelocal's Cloud Datastore API
// held against the newest Cloud Datastore client), which needs a newer Go
// than this module, so that the repository's one `go test ./...` covers it
// too. The built command is handed over in AELOCAL_BIN for the tests that
// run it as a program.
func TestCloudModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and tests another module")
	}
	dir, err := filepath.Abs(filepath.Join("..", "..", "cloud"))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "aelocal")
	if out, err := exec.Command(goTool(), "build", "-o", bin, "../../cmd/aelocal").CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/aelocal: %v\n%s", err, out)
	}
	env := append(os.Environ(), "AELOCAL_BIN="+bin, "GOWORK=off")
	download := exec.Command(goTool(), "mod", "download")
	download.Dir, download.Env = dir, env
	if out, err := download.CombinedOutput(); err != nil {
		if unreachable(string(out)) {
			t.Skipf("the module proxy is unreachable, so the Cloud client cannot be fetched:\n%s", out)
		}
		t.Fatalf("go mod download: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"vet", "./..."}, testArgs()} {
		cmd := exec.Command(goTool(), args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s in cloud: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("go %s in cloud:\n%s", strings.Join(args, " "), out)
	}
}

// testArgs is the go test command line for a nested module: this run's
// -race, and the whole suite.
func testArgs() []string {
	args := []string{"test", "-count=1"}
	if raceEnabled {
		args = append(args, "-race")
	}
	return append(args, "./...")
}

// raceEnabled is set by race_test.go when the tests run with -race.
var raceEnabled bool

// goTool is the go command of the toolchain running the tests.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// unreachable reports whether go's output says the network failed.
func unreachable(out string) bool {
	for _, s := range []string{"dial tcp", "no such host", "connection refused", "i/o timeout", "network is unreachable", "TLS handshake timeout", "proxyconnect"} {
		if strings.Contains(out, s) {
			return true
		}
	}
	return false
}
