package aelocal

// TB is the part of testing.TB that RunT needs; *testing.T, *testing.B
// and *testing.F have it.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// RunT starts a Server for a test and closes it when the test and its
// subtests end, so a test needs one line:
//
//	srv := aelocal.RunT(t)
//
// It fails the test if the server cannot start.
func RunT(t TB) *Server {
	t.Helper()
	s, err := NewServer()
	if err != nil {
		t.Fatalf("aelocal: %v", err)
		return nil
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// RunTOptions is RunT for a server started with options o, for example
// one that also serves the Cloud Datastore API:
//
//	srv := aelocal.RunTOptions(t, &aelocal.Options{CloudDatastoreAddr: "127.0.0.1:0"})
//	t.Setenv("DATASTORE_EMULATOR_HOST", srv.CloudDatastoreAddr())
func RunTOptions(t TB, o *Options) *Server {
	t.Helper()
	s, err := NewServerOptions(o)
	if err != nil {
		t.Fatalf("aelocal: %v", err)
		return nil
	}
	t.Cleanup(func() { s.Close() })
	return s
}
