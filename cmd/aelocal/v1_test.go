package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// raceEnabled is set by race_test.go when the tests run with -race.
var raceEnabled bool

// TestAetestV1 runs the tests of the appengine v1 client (module v1test,
// kept apart so that this module does not require appengine v1) against
// this command, for v1.6.8 (go.mod) and v1.6.7 (go.v167.mod), so that the
// repository's one `go test ./...` covers them too.
func TestAetestV1(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and tests another module")
	}
	bin := aelocalBinary(t)
	dir, err := filepath.Abs(filepath.Join("..", "..", "v1test"))
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(),
		"AELOCAL_BIN="+bin,
		"GOWORK=off",
		// aelocal links appengine v2, the in-process tests v1 too; see
		// v1test/inprocess.
		"GOLANG_PROTOBUF_REGISTRATION_CONFLICT=warn",
	)
	for _, modfile := range []string{"go.mod", "go.v167.mod"} {
		t.Run(modfile, func(t *testing.T) {
			// A copy of the module file, so that go may add what this
			// module's own requirements gained since (-mod=mod) without
			// touching the repository.
			tmp := t.TempDir()
			mf := filepath.Join(tmp, "go.mod")
			for from, to := range map[string]string{modfile: mf, strings.TrimSuffix(modfile, ".mod") + ".sum": filepath.Join(tmp, "go.sum")} {
				b, err := os.ReadFile(filepath.Join(dir, from))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(to, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			download := exec.Command(goTool(), "mod", "download", "-modfile="+mf)
			download.Dir, download.Env = dir, env
			if out, err := download.CombinedOutput(); err != nil {
				if unreachable(string(out)) {
					t.Skipf("the module proxy is unreachable, so appengine v1 cannot be fetched:\n%s", out)
				}
				t.Fatalf("go mod download: %v\n%s", err, out)
			}
			args := []string{"test", "-count=1", "-mod=mod", "-modfile=" + mf}
			if raceEnabled {
				args = append(args, "-race")
			}
			cmd := exec.Command(goTool(), append(args, "./...")...)
			cmd.Dir, cmd.Env = dir, env
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("go %s in v1test: %v\n%s", strings.Join(args, " "), err, out)
			}
			t.Logf("%s", out)
		})
	}
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
