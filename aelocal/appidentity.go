package aelocal

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"strings"
	"sync"
	"time"
)

// identityKey is the app's signing key and its certificate. One key serves
// every Server of the process and is made on first use: an RSA key takes
// tens of milliseconds to generate, and test suites start a server per test
// without signing anything.
type identityKey struct {
	name    string // production names keys by a 40-digit hex id
	key     *rsa.PrivateKey
	certPEM string
}

var appIdentityKey = sync.OnceValues(func() (*identityKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	id := sha1.Sum(pub)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "aelocal app identity"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &identityKey{
		name:    hex.EncodeToString(id[:]),
		key:     key,
		certPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
	}, nil
})

// Application error codes of app_identity_service.
const aiUnknownError = 1003

// aiTokenLifetime is how long an access token lasts, as production's do.
const aiTokenLifetime = time.Hour

func init() {
	const p = "appengine.v2."
	register("app_identity_service", "SignForApp", p+"SignForAppRequest", p+"SignForAppResponse", aiSignForApp)
	register("app_identity_service", "GetPublicCertificatesForApp", p+"GetPublicCertificateForAppRequest", p+"GetPublicCertificateForAppResponse", aiGetPublicCertificates)
	register("app_identity_service", "GetServiceAccountName", p+"GetServiceAccountNameRequest", p+"GetServiceAccountNameResponse", aiGetServiceAccountName)
	register("app_identity_service", "GetDefaultGcsBucketName", p+"GetDefaultGcsBucketNameRequest", p+"GetDefaultGcsBucketNameResponse", aiGetDefaultGcsBucketName)
	register("app_identity_service", "GetAccessToken", p+"GetAccessTokenRequest", p+"GetAccessTokenResponse", aiGetAccessToken)
}

// aiSignForApp signs with RSASSA-PKCS1-v1_5 and SHA-256, as production and
// the stub do; GetPublicCertificatesForApp returns the certificate that
// verifies it.
func aiSignForApp(s *Server, in, out pmsg) error {
	k, err := appIdentityKey()
	if err != nil {
		return errorf(aiUnknownError, "making the signing key: %v", err)
	}
	sum := sha256.Sum256(in.Bytes("bytes_to_sign"))
	sig, err := rsa.SignPKCS1v15(nil, k.key, crypto.SHA256, sum[:])
	if err != nil {
		return errorf(aiUnknownError, "signing: %v", err)
	}
	out.Set("key_name", k.name)
	out.Set("signature_bytes", sig)
	return nil
}

func aiGetPublicCertificates(s *Server, in, out pmsg) error {
	k, err := appIdentityKey()
	if err != nil {
		return errorf(aiUnknownError, "making the signing key: %v", err)
	}
	c := out.AppendMsg("public_certificate_list")
	c.Set("key_name", k.name)
	c.Set("x509_certificate_pem", k.certPEM)
	out.Set("max_client_cache_time_in_second", int64(3600))
	return nil
}

// appIDPart is the app ID without its partition ("dev~app" -> "app"), and a
// domain-scoped ID "example.com:app" as "app.example.com".
func appIDPart() string {
	id := os.Getenv("GAE_APPLICATION")
	if i := strings.IndexByte(id, '~'); i >= 0 {
		id = id[i+1:]
	}
	if dom, app, ok := strings.Cut(id, ":"); ok {
		id = app + "." + dom
	}
	return id
}

// aiGetServiceAccountName answers the app's default service account in
// production's form, APP_ID@appspot.gserviceaccount.com. The stub answers
// test@localhost; the production form keeps code that derives names from
// it working locally.
func aiGetServiceAccountName(s *Server, in, out pmsg) error {
	out.Set("service_account_name", appIDPart()+"@appspot.gserviceaccount.com")
	return nil
}

// aiGetDefaultGcsBucketName answers production's APP_ID.appspot.com where
// the stub answers app_default_bucket, for the same reason.
func aiGetDefaultGcsBucketName(s *Server, in, out pmsg) error {
	out.Set("default_gcs_bucket_name", appIDPart()+".appspot.com")
	return nil
}

// aiGetAccessToken hands out a token no Google API accepts, valid for an
// hour by the server's clock. Like the stub's, it names the scopes it was
// asked for, so a test can see which were requested.
func aiGetAccessToken(s *Server, in, out pmsg) error {
	tok := "aelocal-fake-token:" + strings.Join(strs(in.BytesList("scope")), " ")
	if a := in.Str("service_account_name"); a != "" {
		tok += ":" + a
	}
	out.Set("access_token", tok)
	out.Set("expiration_time", s.Now().Add(aiTokenLifetime).Unix())
	return nil
}
