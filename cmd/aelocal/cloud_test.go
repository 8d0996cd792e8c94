package main

import (
	"os"
	"os/exec"
	"path/filepath"
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
	env := append(os.Environ(), "AELOCAL_BIN="+aelocalBinary(t), "GOWORK=off")
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
