package readmetest

import (
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// goTool is the go command of the toolchain running the test.
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

// goEnv is the environment for go commands run in a scratch module: this
// process's, without what would steer them elsewhere (a go.work, GOFLAGS
// such as -mod=vendor, App Engine and aetest variables of the test's own
// environment), with the test's toolchain first on PATH (README lines say
// "go"), and extra appended. The module cache stays the shared one, so
// modules come from it or from the module proxy.
func goEnv(t testing.TB, extra ...string) []string {
	t.Helper()
	modcache, err := exec.Command(goTool(), "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOMODCACHE: %v", err)
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "GOWORK", k == "GOFLAGS", k == "GOBIN", k == "GOPATH", k == "GOMODCACHE",
			k == "GOTOOLCHAIN", k == "PATH", k == "PORT", k == "API_HOST", k == "API_PORT",
			strings.HasPrefix(k, "GAE_"), strings.HasPrefix(k, "APPENGINE_"), k == "GOOGLE_CLOUD_PROJECT":
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"GOWORK=off",
		"GOTOOLCHAIN=local",
		"GOMODCACHE="+strings.TrimSpace(string(modcache)),
		"PATH="+filepath.Dir(goTool())+string(os.PathListSeparator)+os.Getenv("PATH"),
	)
	return append(env, extra...)
}

// unreachable reports whether go's output says the network failed, so
// that a module missing from the shared cache could not be fetched.
func unreachable(out string) bool {
	for _, s := range []string{"dial tcp", "no such host", "connection refused", "i/o timeout", "network is unreachable", "TLS handshake timeout", "proxyconnect"} {
		if strings.Contains(out, s) {
			return true
		}
	}
	return false
}

// copyTree copies the regular files under src to dst, leaving out
// entries whose names start with "." (.git, .ci) and skip(rel) ones.
func copyTree(t testing.TB, src, dst string, skip func(rel string) bool) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel != "." && (strings.HasPrefix(d.Name(), ".") || (skip != nil && skip(rel))) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return copyFile(p, filepath.Join(dst, rel))
	})
	if err != nil {
		t.Fatalf("copying %s to %s: %v", src, dst, err)
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runGo runs the go command with args in dir and returns its output,
// failing the test (or skipping it, if the module proxy is out of reach)
// when it fails.
func runGo(t testing.TB, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(goTool(), args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		if unreachable(string(out)) {
			t.Skipf("go %s: the module proxy is out of reach:\n%s", strings.Join(args, " "), out)
		}
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}
