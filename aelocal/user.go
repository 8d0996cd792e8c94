package aelocal

import (
	"crypto/hmac"
	"hash/crc32"
	"html/template"
	"net/http"
	"net/mail"
	"net/url"
	"strconv"
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

// loginCookie carries the user the login page signed in, in dev_appserver's
// format "email:True|False:user-id".
const loginCookie = "dev_appserver_login"

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

// Login page.

var loginPage = template.Must(template.New("login").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>aelocal {{if .Logout}}logout{{else}}login{{end}}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em}form{max-width:28em}label{display:block;margin:.6em 0}</style>
</head><body>
<h1>{{if .Logout}}Log out{{else}}Log in{{end}}</h1>
<p>aelocal signs you in locally, as dev_appserver did: no password, no Google account.
{{if .Current}}You are signed in as <b>{{.Current}}</b>.{{else}}You are not signed in.{{end}}</p>
{{if .Logout}}<form method="post" action="/_ah/logout">
<input type="hidden" name="csrf" value="{{.LogoutToken}}">
<input type="hidden" name="continue" value="{{.Continue}}">
<button autofocus>Log out</button>
</form>
{{else}}<form method="post" action="/_ah/login">
<input type="hidden" name="csrf" value="{{.LoginToken}}">
<input type="hidden" name="continue" value="{{.Continue}}">
<label>Email <input name="email" type="email" value="{{.Email}}" required autofocus></label>
<label><input name="admin" type="checkbox" value="1"> Sign in as administrator</label>
<button name="action" value="login">Log in</button>
<button name="action" value="logout" formnovalidate>Log out</button>
</form>{{end}}
</body></html>
`))

// serveLogin is the page user.LoginURL points at, and serveLogout the one
// of user.LogoutURL (also reached as /_ah/login?action=logout). A GET
// shows a form; only a POST of that form signs in or out, so no link, no
// image and no other site can change who is signed in.
func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	s.serveAccount(w, r, r.FormValue("action") == "logout" && r.Method != http.MethodPost)
}

func (s *Server) serveLogout(w http.ResponseWriter, r *http.Request) {
	s.serveAccount(w, r, true)
}

func (s *Server) serveAccount(w http.ResponseWriter, r *http.Request, logout bool) {
	h := w.Header()
	h.Set("X-Frame-Options", "DENY")
	// No form-action: browsers apply it to the redirect that follows the
	// form too, and that goes on to the app, on another origin.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Cache-Control", "no-store")
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	cont := r.FormValue("continue")
	if cont == "" {
		cont = s.continueURL("/")
	}
	if !safeContinue(cont) {
		http.Error(w, "aelocal: the continue URL must be an http(s) URL or a path", http.StatusBadRequest)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		data := struct {
			Logout                   bool
			Continue, Email, Current string
			LoginToken, LogoutToken  string
		}{Logout: logout, Continue: cont, Email: "test@example.com",
			LoginToken: s.console.token("/_ah/login"), LogoutToken: s.console.token("/_ah/logout")}
		if u := loginUser(r); u != nil {
			data.Current, data.Email = u.Email, u.Email
			if u.Admin {
				data.Current += " (administrator)"
			}
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		loginPage.Execute(w, data)
	case http.MethodPost:
		action := r.URL.Path
		if !sameOrigin(r) || !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(s.console.token(action))) {
			http.Error(w, "aelocal: refused: this form did not come from aelocal's own page (reload it and try again)", http.StatusForbidden)
			return
		}
		c := &http.Cookie{Name: loginCookie, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
		switch {
		case action == "/_ah/logout" || r.PostFormValue("action") == "logout":
			c.MaxAge = -1
		case r.PostFormValue("action") == "login":
			email := strings.TrimSpace(r.PostFormValue("email"))
			if a, err := mail.ParseAddress(email); err != nil || a.Address != email {
				http.Error(w, "aelocal: enter an email address", http.StatusBadRequest)
				return
			}
			admin := "False"
			if r.PostFormValue("admin") != "" {
				admin = "True"
			}
			c.Value = email + ":" + admin + ":" + loginUserID(email)
		default:
			http.Error(w, "aelocal: unknown action", http.StatusBadRequest)
			return
		}
		http.SetCookie(w, c)
		http.Redirect(w, r, cont, http.StatusFound)
	default:
		h.Set("Allow", "GET, HEAD, POST")
		http.Error(w, "aelocal: GET or POST", http.StatusMethodNotAllowed)
	}
}

// loginUserID derives a user ID from an email address as aetest.Login does.
func loginUserID(email string) string {
	return strconv.Itoa(int(crc32.ChecksumIEEE([]byte(email))))
}

// safeContinue accepts absolute http(s) URLs and absolute paths.
func safeContinue(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	if u.Scheme == "" && u.Host == "" {
		return strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "//")
	}
	return (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// sameOrigin reports whether a POST came from a page of this server, by the
// headers browsers add. Clients that send neither, such as curl, pass.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

// loginUser reads the user the login page signed in from r's cookie, or
// returns nil.
func loginUser(r *http.Request) *user.User {
	c, err := r.Cookie(loginCookie)
	if err != nil {
		return nil
	}
	parts := strings.Split(c.Value, ":")
	if len(parts) != 3 || parts[0] == "" {
		return nil
	}
	return &user.User{Email: parts[0], Admin: parts[1] == "True", ID: parts[2], AuthDomain: defaultAuthDomain}
}

// withLoginHeaders gives a request that carries the login cookie, and no
// user of its own, the headers App Engine's front end sets for a signed-in
// user: the ones aetest.Login sets, plus the auth domain. A request with
// its own X-AppEngine-User-Email (aetest.Login in a test) keeps it.
func withLoginHeaders(r *http.Request) *http.Request {
	if r.Header.Get("X-AppEngine-User-Email") != "" {
		return r
	}
	u := loginUser(r)
	if u == nil {
		return r
	}
	r = r.Clone(r.Context())
	setUserHeaders(r.Header, u)
	return r
}

// setUserHeaders sets the headers of a signed-in user.
func setUserHeaders(h http.Header, u *user.User) {
	h.Set("X-AppEngine-User-Email", u.Email)
	h.Set("X-AppEngine-User-Id", u.ID)
	h.Set("X-AppEngine-Auth-Domain", u.AuthDomain)
	h.Set("X-AppEngine-Federated-Identity", "")
	h.Set("X-AppEngine-Federated-Provider", "")
	h.Set("X-AppEngine-User-Federated-Identity", u.Email)
	h.Set("X-AppEngine-User-Federated-Provider", "")
	if u.Admin {
		h.Set("X-AppEngine-User-Is-Admin", "1")
	} else {
		h.Set("X-AppEngine-User-Is-Admin", "0")
	}
}
