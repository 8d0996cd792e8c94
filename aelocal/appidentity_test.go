package aelocal

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
)

func TestAppIdentity(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		app := appIDPart()
		if sa, err := appengine.ServiceAccount(ctx); err != nil || sa != app+"@appspot.gserviceaccount.com" {
			t.Fatalf("ServiceAccount = %q, %v", sa, err)
		}
		req, _ := newMsg("appengine.v2.GetDefaultGcsBucketNameRequest")
		resp, _ := newMsg("appengine.v2.GetDefaultGcsBucketNameResponse")
		if err := appengine.APICall(ctx, "app_identity_service", "GetDefaultGcsBucketName", protoV1(req), protoV1(resp)); err != nil {
			t.Fatal(err)
		}
		if b := resp.Str("default_gcs_bucket_name"); b != app+".appspot.com" {
			t.Fatalf("default bucket %q", b)
		}

		tok, exp, err := appengine.AccessToken(ctx, "https://www.googleapis.com/auth/devstorage.read_only")
		if err != nil || !strings.Contains(tok, "devstorage.read_only") {
			t.Fatalf("AccessToken = %q, %v", tok, err)
		}
		if d := exp.Sub(s.Now()); d < 59*time.Minute || d > time.Hour {
			t.Fatalf("token expires in %v, want an hour", d)
		}

		// A signature verifies with the public certificate of its key.
		msg := []byte("signed by the app")
		keyName, sig, err := appengine.SignBytes(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		certs, err := appengine.PublicCertificates(ctx)
		if err != nil || len(certs) != 1 || certs[0].KeyName != keyName || len(keyName) != 40 {
			t.Fatalf("PublicCertificates = %+v, %v (signed with %q)", certs, err, keyName)
		}
		block, _ := pem.Decode(certs[0].Data)
		if block == nil || block.Type != "CERTIFICATE" {
			t.Fatalf("not a PEM certificate: %q", certs[0].Data)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(msg)
		pub := cert.PublicKey.(*rsa.PublicKey)
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
			t.Fatalf("the signature does not verify: %v", err)
		}
		sum[0] ^= 1
		if rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) == nil {
			t.Fatal("the signature verifies other bytes")
		}
	})
}

func TestAppIDPart(t *testing.T) {
	for in, want := range map[string]string{"dev~app": "app", "s~example.com:app": "app.example.com", "plain": "plain"} {
		t.Setenv("GAE_APPLICATION", in)
		if got := appIDPart(); got != want {
			t.Errorf("appIDPart of %q = %q, want %q", in, got, want)
		}
	}
}
