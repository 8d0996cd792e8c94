package aelocal

import (
	"context"
	"reflect"
	"testing"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/module"
)

func TestModules(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		if ms, err := module.List(ctx); err != nil || !reflect.DeepEqual(ms, []string{"default"}) {
			t.Fatalf("List = %v, %v", ms, err)
		}
		if vs, err := module.Versions(ctx, ""); err != nil || !reflect.DeepEqual(vs, []string{"1"}) {
			t.Fatalf("Versions = %v, %v", vs, err)
		}
		if v, err := module.DefaultVersion(ctx, "default"); err != nil || v != "1" {
			t.Fatalf("DefaultVersion = %q, %v", v, err)
		}
		_, err := module.Versions(ctx, "worker")
		wantAPIError(t, err, "INVALID_MODULE", "worker")
		_, err = module.NumInstances(ctx, "", "")
		wantAPIError(t, err, "INVALID_VERSION", "scales automatically")
		wantAPIError(t, module.SetNumInstances(ctx, "", "", 2), "INVALID_VERSION", "")
		wantAPIError(t, module.Start(ctx, "default", "1"), "INVALID_VERSION", "")
		wantAPIError(t, module.Stop(ctx, "", ""), "INVALID_VERSION", "")
		wantAPIError(t, module.Stop(ctx, "default", "2"), "INVALID_VERSION", `version "2"`)

		if h, err := appengine.ModuleHostname(ctx, "", "", ""); err != nil || h != "localhost:8080" {
			t.Fatalf("ModuleHostname = %q, %v", h, err)
		}
		_, err = appengine.ModuleHostname(ctx, "worker", "", "")
		wantAPIError(t, err, "INVALID_MODULE", "")
		_, err = appengine.ModuleHostname(ctx, "", "", "0")
		wantAPIError(t, err, "INVALID_INSTANCES", "")
	})
}

func TestModuleHostnameIsTheApp(t *testing.T) {
	s, err := NewServerOptions(&Options{AppURL: "http://127.0.0.1:8123"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if h, err := appengine.ModuleHostname(middlewareContext(t, s), "", "", ""); err != nil || h != "127.0.0.1:8123" {
		t.Fatalf("ModuleHostname = %q, %v", h, err)
	}
}
