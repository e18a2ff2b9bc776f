package herokustub

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	hk "github.com/heroku/heroku-go/v5"
)

const (
	defaultSize      = "standard-1X"
	heroku3MediaType = "application/vnd.heroku+json"
	versionV3        = "3"
	versionDocker    = "3.docker-releases"
	// versionSDK is what the Heroku CLI's `releases` sends (heroku.md
	// "Heroku's own clients").
	versionSDK        = "3.sdk"
	maxRequestBody    = 1 << 20
	missingVersionMsg = "Please specify a version along with Heroku's API MIME type. For example, `Accept: application/vnd.heroku+json; version=3`.\n"
	rateLimitMsg      = "Your account reached the API rate limit\nPlease wait a few minutes before making new requests"
	rateLimitURL      = "https://devcenter.heroku.com/articles/platform-api-reference#rate-limits"
	notFoundRouteMsg  = "The requested API endpoint was not found. Are you using the right HTTP verb (i.e. `GET` vs. `POST`), and did you specify your intended version with the `Accept` header?"
)

var (
	processTypeRE = regexp.MustCompile(`^[-\w]{1,128}$`)
	imageIDRE     = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	// dyno sizes the stand-in accepts, as Heroku names them.
	dynoSizes = map[string]bool{
		"eco": true, "basic": true, "standard-1x": true, "standard-2x": true,
		"performance-m": true, "performance-l": true, "performance-l-ram": true,
		"performance-xl": true, "performance-2xl": true,
		"private-s": true, "private-m": true, "private-l": true,
		"shield-s": true, "shield-m": true, "shield-l": true,
	}
)

// recorder captures the status for Calls and passes Hijack through.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("herokustub: hijack not supported")
	}
	return hj.Hijack()
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// writeAPIError writes Heroku's {"id","message"} error.
func writeAPIError(w http.ResponseWriter, status int, id, msg string) {
	writeAPIErrorBody(w, status, map[string]string{"id": id, "message": msg})
}

func writeAPIErrorBody(w http.ResponseWriter, status int, body map[string]string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// writeNotFound writes a not_found error that names its resource ("app",
// "release", …), as Heroku's not_found bodies do (heroku.md "Errors").
func writeNotFound(w http.ResponseWriter, resource, msg string) {
	writeAPIErrorBody(w, http.StatusNotFound, map[string]string{"id": "not_found", "message": msg, "resource": resource})
}

// writeRateLimited writes Heroku's 429 body, url included (heroku.md "Rate
// limit").
func writeRateLimited(w http.ResponseWriter) {
	writeAPIErrorBody(w, http.StatusTooManyRequests, map[string]string{"id": "rate_limit", "message": rateLimitMsg, "url": rateLimitURL})
}

// writeMissingVersion writes Heroku's answer to a request without a
// version: its text is under "error", not "message" (heroku.md "Platform
// API in general").
func writeMissingVersion(w http.ResponseWriter) {
	writeAPIErrorBody(w, http.StatusBadRequest, map[string]string{"id": "missing_version", "error": missingVersionMsg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// faultError is the body of an injected status.
func faultError(w http.ResponseWriter, status int) {
	switch {
	case status == http.StatusTooManyRequests:
		writeRateLimited(w)
	case status == http.StatusServiceUnavailable:
		writeAPIError(w, status, "service_unavailable", "API is temporarily unavailable.")
	case status >= 500:
		writeAPIError(w, status, "internal_server_error", "Internal server error.")
	case status == http.StatusUnauthorized:
		writeAPIError(w, status, "unauthorized", "Invalid credentials provided.")
	case status == http.StatusForbidden:
		writeAPIError(w, status, "forbidden", "You do not have access to the app.")
	case status == http.StatusNotFound:
		writeNotFound(w, "app", "Couldn't find that app.")
	case status == http.StatusUnprocessableEntity:
		writeAPIError(w, status, "invalid_params", "Invalid params.")
	default:
		writeAPIError(w, status, "bad_request", http.StatusText(status))
	}
}

// APIHandler serves the Platform API.
func (s *Server) APIHandler() http.Handler { return s.apiHandler }

func (s *Server) newAPIHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /apps/{app}", s.getApp)
	mux.HandleFunc("GET /apps/{app}/releases", s.listReleases)
	mux.HandleFunc("GET /apps/{app}/releases/{release}", s.getRelease)
	mux.HandleFunc("GET /apps/{app}/formation", s.listFormation)
	mux.HandleFunc("GET /apps/{app}/dynos", s.listDynos)
	mux.HandleFunc("GET /apps/{app}/formation/{type}", s.getFormation)
	mux.HandleFunc("PATCH /apps/{app}/formation", s.patchFormation)
	mux.HandleFunc("PATCH /apps/{app}/formation/{type}", s.patchFormationType)
	mux.HandleFunc("POST /apps/{app}/releases", s.rollback)
	mux.HandleFunc("GET /account/rate-limits", s.getRateLimits)
	mux.HandleFunc("GET /apps/{app}/config-vars", s.getConfigVars)
	mux.HandleFunc("PATCH /apps/{app}/config-vars", s.patchConfigVars)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeAPIError(w, http.StatusNotFound, "not_found", notFoundRouteMsg)
	})

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w}
		call := Call{Handler: "api", Method: r.Method, Path: r.URL.Path,
			Accept: r.Header.Get("Accept"), Range: r.Header.Get("Range")}
		call.Auth, call.BasicUser = authScheme(r)
		defer func() {
			call.Status = rec.status
			s.record(call)
		}()

		reqID := newID()
		if in := r.Header.Get("Request-Id"); in != "" && len(in) < 200 {
			reqID += "," + in
		}
		w.Header().Set("Request-Id", reqID)
		w.Header().Set("RateLimit-Remaining", strconv.Itoa(s.RateLimitRemaining()))

		if s.applyFault(rec, r, func(status int) { faultError(rec, status) }) {
			call.Fault = true
			return
		}
		// Release-phase output streams are pre-signed URLs: no auth, not counted.
		if id, ok := strings.CutPrefix(r.URL.Path, "/streams/release/"); ok && r.Method == http.MethodGet {
			s.serveOutputStream(rec, r, id)
			return
		}
		if !s.apiAuthorized(r) {
			writeAPIError(rec, http.StatusUnauthorized, "unauthorized", "Invalid credentials provided.")
			return
		}
		// GET /account/rate-limits is not counted.
		if !(r.Method == http.MethodGet && r.URL.Path == "/account/rate-limits") {
			left, ok := s.takeToken()
			w.Header().Set("RateLimit-Remaining", strconv.Itoa(left))
			if !ok {
				writeRateLimited(rec)
				return
			}
		}
		if _, ok := apiVersion(r); !ok {
			writeMissingVersion(rec)
			return
		}
		mux.ServeHTTP(rec, r)
	})
}

func authScheme(r *http.Request) (scheme, user string) {
	h := r.Header.Get("Authorization")
	switch {
	case strings.HasPrefix(h, "Bearer "):
		return "bearer", ""
	case strings.HasPrefix(h, "Basic "):
		u, _, _ := r.BasicAuth()
		return "basic", u
	}
	return "", ""
}

// apiAuthorized accepts "Bearer <key>" (and Basic with the key as password,
// as Heroku also does).
func (s *Server) apiAuthorized(r *http.Request) bool {
	if s.key == "" {
		return false
	}
	h := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
		return tok == s.key
	}
	if _, p, ok := r.BasicAuth(); ok {
		return p == s.key
	}
	return false
}

// apiVersion reads the API version from Accept.
func apiVersion(r *http.Request) (string, bool) {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil || mt != heroku3MediaType {
			continue
		}
		// [U] Variants other than these three are refused as a missing
		// version; Heroku has more (heroku.md names 3.sdk and
		// 3.docker-releases), none of which herokunix or the CLI commands
		// the stand-in serves send.
		switch v := params["version"]; v {
		case versionV3, versionDocker, versionSDK:
			return v, true
		}
	}
	return "", false
}

func (s *Server) lookupApp(w http.ResponseWriter, r *http.Request) *app {
	name := r.PathValue("app")
	if a := s.apps[name]; a != nil {
		return a
	}
	for _, a := range s.apps {
		if a.id == name {
			return a
		}
	}
	writeNotFound(w, "app", "Couldn't find that app.")
	return nil
}

// appAnswer is GET /apps/{app}: heroku-go v5's App lacks "generation",
// which the v6 schema has.
type appAnswer struct {
	hk.App
	Generation struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"generation"`
}

// [U] Heroku's generation ids are not published; these are the stand-in's.
var generationIDs = map[string]string{
	GenerationCedar: "6e2a8a36-4f0c-4a62-8a7c-5c0b2a0e1c01",
	GenerationFir:   "6e2a8a36-4f0c-4a62-8a7c-5c0b2a0e1f02",
}

func (s *Server) appJSON(a *app) appAnswer {
	var ans appAnswer
	ans.Generation.ID, ans.Generation.Name = generationIDs[a.generation], a.generation
	out := &ans.App
	out.ID, out.Name, out.WebURL = a.id, a.name, a.webURL
	out.Stack.ID, out.Stack.Name = stackID(a.stack), a.stack
	out.BuildStack.ID, out.BuildStack.Name = stackID(a.buildStack), a.buildStack
	out.CreatedAt, out.UpdatedAt, out.ReleasedAt = a.createdAt, a.updatedAt, a.releasedAt
	out.GitURL = "https://git.heroku.com/" + a.name + ".git"
	out.Owner.Email, out.Owner.ID = "herokunix@example.com", ownerID
	out.Region.ID, out.Region.Name = "59accabd-516d-4f0e-83e6-6e3757701145", "us"
	return ans
}

const ownerID = "01234567-89ab-4def-8123-456789abcdef"

func stackID(name string) string {
	switch name {
	case "container":
		return "69bee368-352b-4bd0-9b7c-819d860a2588"
	case "heroku-24":
		return "74cfe988-7527-4ca4-9e2a-a5b4c9d2e2f4"
	}
	return "00000000-0000-4000-8000-" + fmt.Sprintf("%012x", len(name))
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupApp(w, r)
	if a == nil {
		return
	}
	writeJSON(w, http.StatusOK, s.appJSON(a))
}

func (s *Server) getConfigVars(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupApp(w, r)
	if a == nil {
		return
	}
	vars := a.configVars
	if vars == nil {
		vars = map[string]string{}
	}
	writeJSON(w, http.StatusOK, vars)
}

func (s *Server) getRateLimits(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, hk.RateLimit{Remaining: s.RateLimitRemaining()})
}

// ReleaseOutput returns the release-phase output of a release.
func (s *Server) ReleaseOutput(releaseID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.outputs[releaseID]
}
