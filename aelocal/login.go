package aelocal

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
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

// The login and logout pages, and the cookie they set.
//
// The cookie keeps dev_appserver's name and readable format,
// "email:True|False:user-id", with a signature added:
// "email:True:user-id:signature", an HMAC-SHA256 of the rest under the
// server's secret (the one its forms' tokens come from). A browser does not
// keep cookies apart by port, so a page served on any other port of
// 127.0.0.1 could set this cookie from script; unsigned, it would sign its
// visitor in as whoever it liked, administrator included. A cookie whose
// signature is missing or wrong signs nobody in. The secret is made anew
// at every start: after a restart people log in again.
//
// After signing in or out the page sends the browser to its continue URL,
// which must be the app's: a path, or an http(s) URL on this machine (a
// loopback name or address), on the app's URL, the front end or a host the
// server accepts (Options.AllowedHosts). dev_appserver went wherever it was
// told, an open redirect that turns a link to the login page into a link
// to any site. The page says where it goes.

// loginCookie carries the user the login page signed in.
const loginCookie = "dev_appserver_login"

// loginSignature signs v, the cookie's value without its signature.
func (s *Server) loginSignature(v string) string {
	m := hmac.New(sha256.New, s.console.secret)
	m.Write([]byte("aelocal login cookie\x00" + v))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// loginCookieValue is the signed cookie value for email.
func (s *Server) loginCookieValue(email string, admin bool) string {
	v := email + ":False:" + loginUserID(email)
	if admin {
		v = email + ":True:" + loginUserID(email)
	}
	return v + ":" + s.loginSignature(v)
}

// loginUser reads the user the login page signed in from r's cookie, or
// returns nil. Of several cookies of that name (a page can add its own,
// with another path), the first one signed by this server counts.
func (s *Server) loginUser(r *http.Request) *user.User {
	for _, c := range r.CookiesNamed(loginCookie) {
		i := strings.LastIndexByte(c.Value, ':')
		if i < 0 {
			continue
		}
		v, sig := c.Value[:i], c.Value[i+1:]
		if !hmac.Equal([]byte(sig), []byte(s.loginSignature(v))) {
			continue
		}
		parts := strings.Split(v, ":")
		if len(parts) != 3 || parts[0] == "" || (parts[1] != "True" && parts[1] != "False") {
			continue
		}
		return &user.User{Email: parts[0], Admin: parts[1] == "True", ID: parts[2], AuthDomain: defaultAuthDomain}
	}
	return nil
}

// loginUserID derives a user ID from an email address as aetest.Login does.
func loginUserID(email string) string {
	return strconv.Itoa(int(crc32.ChecksumIEEE([]byte(email))))
}

// validLoginEmail reports whether email is an address the cookie can
// carry as it is: no ':' (the cookie's separator) and only bytes a cookie
// value may hold, which leaves out spaces, quotes, commas and semicolons.
func validLoginEmail(email string) bool {
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email {
		return false
	}
	for i := 0; i < len(email); i++ {
		c := email[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\":,;\\", c) >= 0 {
			return false
		}
	}
	return true
}

// allowedContinue reports whether the login page may send the browser to
// cont: a path on this origin, or an http(s) URL of the app's (see above).
func (s *Server) allowedContinue(cont string) bool {
	u, err := url.Parse(cont)
	if err != nil {
		return false
	}
	if u.Scheme == "" && u.Host == "" {
		// "//host" and "/\host" are taken by browsers for another host.
		return strings.HasPrefix(cont, "/") && !strings.HasPrefix(cont, "//") && !strings.HasPrefix(cont, "/\\")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return false
	}
	if s.hostAllowed(u.Host) {
		return true
	}
	for _, base := range []string{s.appURL, s.FrontURL(), s.URL()} {
		if b, err := url.Parse(base); err == nil && b.Host != "" && strings.EqualFold(b.Host, u.Host) {
			return true
		}
	}
	return false
}

// accountPage is a file of the console's (console/account.html), not a
// .tmpl, so that the console does not take it for one of its pages.
var accountPage = sync.OnceValue(func() *template.Template {
	return template.Must(template.ParseFS(consoleFiles, "console/account.html"))
})

var consoleCSS = sync.OnceValue(func() template.CSS {
	b, err := consoleFiles.ReadFile("console/console.css")
	if err != nil {
		panic(err)
	}
	return template.CSS(b)
})

// accountData is what the login and logout page shows.
type accountData struct {
	Logout                   bool
	CSS                      template.CSS
	Continue, Email, Current string
	Home, Console            string
	LoginURL, LogoutURL      string
	LoginToken, LogoutToken  string
	Error                    string
}

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
	// form too, and that goes on to the app, on another origin. The
	// console's style is inlined: this page may be on the front end's
	// origin, which has no console.css.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "same-origin")
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	cont := r.FormValue("continue")
	if cont == "" {
		cont = s.continueURL("/")
	}
	data := accountData{Logout: logout, CSS: consoleCSS(), Continue: cont, Email: "test@example.com",
		Home: s.continueURL("/"), Console: s.URL() + "/"}
	if !s.allowedContinue(cont) {
		data.Continue = data.Home
		data.Error = "This link would send you on to " + cont + " after you log in or out, which is not this app's. aelocal goes on only to the app's own pages: a path, or a URL on this machine or on the app's address."
		s.renderAccount(w, r, http.StatusBadRequest, &data)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		data.LoginToken, data.LogoutToken = s.console.token("/_ah/login"), s.console.token("/_ah/logout")
		data.LoginURL = "/_ah/login?continue=" + url.QueryEscape(cont)
		data.LogoutURL = "/_ah/logout?continue=" + url.QueryEscape(cont)
		if u := s.loginUser(r); u != nil {
			data.Current, data.Email = u.Email, u.Email
			if u.Admin {
				data.Current += " (administrator)"
			}
		}
		s.renderAccount(w, r, http.StatusOK, &data)
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
			if !validLoginEmail(email) {
				http.Error(w, "aelocal: enter an email address (without spaces, quotes, colons, commas or semicolons)", http.StatusBadRequest)
				return
			}
			c.Value = s.loginCookieValue(email, r.PostFormValue("admin") != "")
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

// renderAccount writes the login or logout page.
func (s *Server) renderAccount(w http.ResponseWriter, r *http.Request, status int, data *accountData) {
	writePage(w, r, status, accountPage(), data)
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

// withLoginHeaders gives a request that carries the login cookie, and no
// user of its own, the headers App Engine's front end sets for a signed-in
// user: the ones aetest.Login sets, plus the auth domain. A request with
// its own X-AppEngine-User-Email (aetest.Login in a test) keeps it. As on
// the front end, a request a page of another local server made (a form
// posted, a fetch) carries no user: see fromAppSite.
func (s *Server) withLoginHeaders(r *http.Request) *http.Request {
	if r.Header.Get("X-AppEngine-User-Email") != "" || !fromAppSite(r) {
		return r
	}
	u := s.loginUser(r)
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
