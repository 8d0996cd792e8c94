package aelocal

import (
	"net/url"
	"strings"
	"sync"

	"google.golang.org/appengine/v2/user"
)

// Application error codes of the user service (UserServiceError.ErrorCode).
const userOAuthInvalidRequest = 4

// What the SDK's stub answers for OAuth, and dev_appserver's defaults.
const (
	defaultAuthDomain    = "gmail.com"
	defaultOAuthEmail    = "example@example.com"
	defaultOAuthUserID   = "0"
	defaultOAuthClientID = "123456789.apps.googleusercontent.com"
	oauthConsumerKey     = "example.com"
	defaultAppURL        = "http://localhost:8080" // dev_appserver's address of the app
)

// userService implements the "user" service.
type userService struct {
	mu    sync.Mutex
	oauth *user.User // nil: no OAuth user, as for a request without a token
}

func newUserService() *userService {
	return &userService{oauth: &user.User{
		Email:      defaultOAuthEmail,
		AuthDomain: defaultAuthDomain,
		ID:         defaultOAuthUserID,
		ClientID:   defaultOAuthClientID,
	}}
}

func init() {
	const p = "appengine.v2."
	register("user", "CreateLoginURL", p+"CreateLoginURLRequest", p+"CreateLoginURLResponse", userCreateLoginURL)
	register("user", "CreateLogoutURL", p+"CreateLogoutURLRequest", p+"CreateLogoutURLResponse", userCreateLogoutURL)
	register("user", "GetOAuthUser", p+"GetOAuthUserRequest", p+"GetOAuthUserResponse", userGetOAuthUser)
	register("user", "CheckOAuthSignature", p+"CheckOAuthSignatureRequest", p+"CheckOAuthSignatureResponse", userCheckOAuthSignature)
}

// SetOAuthUser sets the user that user.CurrentOAuth reports, whatever the
// scopes asked for. The default is the SDK stub's: example@example.com,
// ID "0", auth domain gmail.com, not an admin. nil means no OAuth user:
// user.CurrentOAuth and user.OAuthConsumerKey then fail with
// OAUTH_INVALID_REQUEST, as for a request that carries no token.
func (s *Server) SetOAuthUser(u *user.User) {
	s.users.mu.Lock()
	defer s.users.mu.Unlock()
	if u == nil {
		s.users.oauth = nil
		return
	}
	c := *u
	s.users.oauth = &c
}

// The login and logout URLs have dev_appserver's shapes,
// /_ah/login?continue=... and /_ah/logout?continue=..., with the
// destination made absolute and escaped as the stub escapes it (Python's
// urllib.parse.quote, which keeps "/"), so that apps and tests that look
// for those paths find them. dev_appserver's URLs were relative, as it
// served the app and these pages on one port; here they are absolute, on
// the server that has the pages for the app's origin: the front end when
// there is one (Options.FrontAddr), which serves the app and them on one
// port as dev_appserver did, else this server, since the app's own port
// has no login page.

func userCreateLoginURL(s *Server, in, out pmsg) error {
	out.Set("login_url", s.loginBase()+"/_ah/login?continue="+pyQuote(s.continueURL(in.Str("destination_url"))))
	return nil
}

func userCreateLogoutURL(s *Server, in, out pmsg) error {
	out.Set("logout_url", s.loginBase()+"/_ah/logout?continue="+pyQuote(s.continueURL(in.Str("destination_url"))))
	return nil
}

// loginBase is the base URL of the login and logout pages a browser on
// the app should go to.
func (s *Server) loginBase() string {
	if f := s.FrontURL(); f != "" {
		return f
	}
	return s.URL()
}

// pyQuote escapes s as Python's urllib.parse.quote(s) does: every byte but
// letters, digits, "_.-~" and "/" as %XX.
func pyQuote(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("_.-~/", c) >= 0:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// continueURL makes a destination absolute, as the stub does with the
// current request's host: against the front end's URL, else AppURL, else
// dev_appserver's http://localhost:8080 when the server does not know the
// app.
func (s *Server) continueURL(dest string) string {
	u, err := url.Parse(dest)
	if err != nil || (u.Scheme != "" && u.Host != "") {
		return dest
	}
	base := s.FrontURL()
	if base == "" {
		base = s.appURL
	}
	if base == "" {
		base = defaultAppURL
	}
	b, err := url.Parse(base)
	if err != nil {
		return dest
	}
	if u.Path == "" && u.RawQuery == "" && u.Fragment == "" {
		u.Path = "/"
	}
	return b.ResolveReference(u).String()
}

func userGetOAuthUser(s *Server, in, out pmsg) error {
	s.users.mu.Lock()
	u := s.users.oauth
	s.users.mu.Unlock()
	if u == nil {
		return errorf(userOAuthInvalidRequest, "the request carries no OAuth token")
	}
	out.Set("email", u.Email)
	out.Set("user_id", u.ID)
	out.Set("auth_domain", u.AuthDomain)
	out.Set("is_admin", u.Admin)
	out.Set("client_id", u.ClientID)
	return nil
}

// userCheckOAuthSignature answers OAuth 1 consumer-key checks with the
// consumer key dev_appserver used.
func userCheckOAuthSignature(s *Server, in, out pmsg) error {
	s.users.mu.Lock()
	u := s.users.oauth
	s.users.mu.Unlock()
	if u == nil {
		return errorf(userOAuthInvalidRequest, "the request carries no OAuth signature")
	}
	out.Set("oauth_consumer_key", oauthConsumerKey)
	return nil
}
