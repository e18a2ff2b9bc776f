package herokustub

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	hk "github.com/heroku/heroku-go/v5"
)

const (
	defaultSize       = "standard-1X"
	heroku3MediaType  = "application/vnd.heroku+json"
	versionV3         = "3"
	versionDocker     = "3.docker-releases"
	maxRequestBody    = 1 << 20
	missingVersionMsg = "Please specify a version along with Heroku's API MIME type. For example, `Accept: application/vnd.heroku+json; version=3`.\n"
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
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"id": id, "message": msg})
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
		writeAPIError(w, status, "rate_limit", "Your account reached the API rate limit\nPlease wait a few minutes before making new requests")
	case status == http.StatusServiceUnavailable:
		writeAPIError(w, status, "service_unavailable", "API is temporarily unavailable.")
	case status >= 500:
		writeAPIError(w, status, "internal_server_error", "Internal server error.")
	case status == http.StatusUnauthorized:
		writeAPIError(w, status, "unauthorized", "Invalid credentials provided.")
	case status == http.StatusForbidden:
		writeAPIError(w, status, "forbidden", "You do not have access to the app.")
	case status == http.StatusNotFound:
		writeAPIError(w, status, "not_found", "Couldn't find that app.")
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
	mux.HandleFunc("GET /apps/{app}/formation/{type}", s.getFormation)
	mux.HandleFunc("PATCH /apps/{app}/formation", s.patchFormation)
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
			s.mu.Lock()
			out, found := s.outputs[id]
			s.mu.Unlock()
			if !found {
				writeAPIError(rec, http.StatusNotFound, "not_found", "Couldn't find that stream.")
				return
			}
			rec.Header().Set("Content-Type", "text/plain; charset=utf-8")
			rec.WriteHeader(http.StatusOK)
			_, _ = rec.Write([]byte(out))
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
				faultError(rec, http.StatusTooManyRequests)
				return
			}
		}
		if _, ok := apiVersion(r); !ok {
			writeAPIError(rec, http.StatusBadRequest, "missing_version", missingVersionMsg)
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
		switch v := params["version"]; v {
		case versionV3, versionDocker:
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
	writeAPIError(w, http.StatusNotFound, "not_found", "Couldn't find that app.")
	return nil
}

func (s *Server) appJSON(a *app) hk.App {
	var out hk.App
	out.ID, out.Name, out.WebURL = a.id, a.name, a.webURL
	out.Stack.ID, out.Stack.Name = stackID(a.stack), a.stack
	out.BuildStack.ID, out.BuildStack.Name = stackID(a.buildStack), a.buildStack
	out.CreatedAt, out.UpdatedAt, out.ReleasedAt = a.createdAt, a.updatedAt, a.releasedAt
	out.GitURL = "https://git.heroku.com/" + a.name + ".git"
	out.Owner.Email, out.Owner.ID = "herokunix@example.com", ownerID
	out.Region.ID, out.Region.Name = "59accabd-516d-4f0e-83e6-6e3757701145", "us"
	return out
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

func (s *Server) releaseJSON(r *http.Request, a *app, rel *Release) hk.Release {
	var out hk.Release
	out.ID, out.Version, out.Status, out.Current = rel.ID, rel.Version, rel.Status, rel.Current
	out.Description, out.CreatedAt, out.UpdatedAt = rel.Description, rel.CreatedAt, rel.UpdatedAt
	out.App.ID, out.App.Name = a.id, a.name
	out.User.Email, out.User.ID = "herokunix@example.com", ownerID
	out.AddonPlanNames = []string{}
	if _, ok := rel.Images["release"]; ok {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		u := fmt.Sprintf("%s://%s/streams/release/%s", scheme, r.Host, rel.ID)
		out.OutputStreamURL = &u
	}
	return out
}

// listRange is a parsed Range header: "<field> [first]..[last][; max=N[,order=desc]]".
type listRange struct {
	field       string
	first, last string
	max         int
	desc        bool
}

var rangeRE = regexp.MustCompile(`^\s*(id|version)\s*([^.;\s]*)\s*\.\.\s*([^;\s]*)\s*(?:;\s*(.*))?$`)

func parseRange(h string) (listRange, error) {
	lr := listRange{field: "id", max: 200}
	if strings.TrimSpace(h) == "" {
		return lr, nil
	}
	m := rangeRE.FindStringSubmatch(h)
	if m == nil {
		return lr, fmt.Errorf("invalid Range %q", h)
	}
	lr.field, lr.first, lr.last = m[1], m[2], m[3]
	for _, p := range strings.FieldsFunc(m[4], func(r rune) bool { return r == ',' || r == ';' }) {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch k {
		case "max":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return lr, fmt.Errorf("invalid max %q", v)
			}
			lr.max = n
		case "order":
			switch v {
			case "asc":
			case "desc":
				lr.desc = true
			default:
				return lr, fmt.Errorf("invalid order %q", v)
			}
		default:
			return lr, fmt.Errorf("invalid Range parameter %q", k)
		}
	}
	return lr, nil
}

func (s *Server) listReleases(w http.ResponseWriter, r *http.Request) {
	lr, err := parseRange(r.Header.Get("Range"))
	if err != nil {
		writeAPIError(w, http.StatusRequestedRangeNotSatisfiable, "requested_range_not_satisfiable", err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupApp(w, r)
	if a == nil {
		return
	}
	rels := append([]*Release(nil), a.releases...)
	key := func(rel *Release) string { return rel.ID }
	less := func(i, j int) bool { return rels[i].ID < rels[j].ID }
	if lr.field == "version" {
		key = func(rel *Release) string { return strconv.Itoa(rel.Version) }
		less = func(i, j int) bool { return rels[i].Version < rels[j].Version }
	}
	sort.Slice(rels, less)
	if lr.desc {
		for i, j := 0, len(rels)-1; i < j; i, j = i+1, j-1 {
			rels[i], rels[j] = rels[j], rels[i]
		}
	}
	// Skip to first; stop after last.
	start := 0
	if lr.first != "" {
		start = len(rels)
		for i, rel := range rels {
			if key(rel) == lr.first {
				start = i
				break
			}
		}
	}
	rels = rels[start:]
	if lr.last != "" {
		for i, rel := range rels {
			if key(rel) == lr.last {
				rels = rels[:i+1]
				break
			}
		}
	}
	status := http.StatusOK
	if len(rels) > lr.max {
		next := rels[lr.max]
		rels = rels[:lr.max]
		status = http.StatusPartialContent
		order := ""
		if lr.desc {
			order = ", order=desc"
		}
		w.Header().Set("Next-Range", fmt.Sprintf("%s %s..; max=%d%s", lr.field, key(next), lr.max, order))
	}
	out := make([]hk.Release, 0, len(rels))
	for _, rel := range rels {
		out = append(out, s.releaseJSON(r, a, rel))
	}
	if len(rels) > 0 {
		w.Header().Set("Content-Range", fmt.Sprintf("%s %s..%s", lr.field, key(rels[0]), key(rels[len(rels)-1])))
	}
	w.Header().Set("Accept-Ranges", "id, version")
	writeJSON(w, status, out)
}

func (s *Server) getRelease(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupApp(w, r)
	if a == nil {
		return
	}
	id := r.PathValue("release")
	for _, rel := range a.releases {
		if rel.ID == id || strconv.Itoa(rel.Version) == id {
			writeJSON(w, http.StatusOK, s.releaseJSON(r, a, rel))
			return
		}
	}
	writeAPIError(w, http.StatusNotFound, "not_found", "Couldn't find that release.")
}

func formationJSON(a *app, f *Formation) hk.Formation {
	var out hk.Formation
	out.App.ID, out.App.Name = a.id, a.name
	out.ID, out.Type, out.Quantity, out.Size, out.Command = f.ID, f.Type, f.Quantity, f.Size, f.Command
	out.CreatedAt, out.UpdatedAt = f.CreatedAt, f.UpdatedAt
	return out
}

func (s *Server) listFormation(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupApp(w, r)
	if a == nil {
		return
	}
	out := []hk.Formation{}
	for _, f := range sortedFormation(a) {
		out = append(out, formationJSON(a, &f))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getFormation(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupApp(w, r)
	if a == nil {
		return
	}
	f := a.formation[r.PathValue("type")]
	if f == nil {
		writeAPIError(w, http.StatusNotFound, "not_found", fmt.Sprintf("Couldn't find that process type (%s).", r.PathValue("type")))
		return
	}
	writeJSON(w, http.StatusOK, formationJSON(a, f))
}

type formationUpdate struct {
	Type        string  `json:"type"`
	Quantity    *int    `json:"quantity"`
	Size        *string `json:"size"`
	DockerImage *string `json:"docker_image"`
}

func (s *Server) patchFormation(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Updates []formationUpdate `json:"updates"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err := dec.Decode(&body); err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_request", "Invalid JSON in the request body.")
		return
	}
	if len(body.Updates) == 0 {
		writeAPIError(w, http.StatusUnprocessableEntity, "invalid_params", "Missing required params: updates.")
		return
	}
	docker := false
	for _, u := range body.Updates {
		if !processTypeRE.MatchString(u.Type) {
			writeAPIError(w, http.StatusUnprocessableEntity, "invalid_params", "Invalid process type.")
			return
		}
		if u.DockerImage != nil {
			docker = true
		}
	}
	version, _ := apiVersion(r)

	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupApp(w, r)
	if a == nil {
		return
	}
	if docker {
		if version != versionDocker {
			writeAPIError(w, http.StatusUnprocessableEntity, "invalid_params",
				"docker_image is only accepted with `Accept: application/vnd.heroku+json; version=3.docker-releases`.")
			return
		}
		s.dockerRelease(w, a, body.Updates)
		return
	}
	s.scale(w, a, body.Updates)
}

// dockerRelease creates one release of all the images.
func (s *Server) dockerRelease(w http.ResponseWriter, a *app, updates []formationUpdate) {
	if a.buildStack != "container" {
		writeAPIError(w, http.StatusUnprocessableEntity, "invalid_params",
			fmt.Sprintf("This app's stack is %s; docker releases need the container stack.", a.buildStack))
		return
	}
	images := map[string]string{}
	for _, u := range updates {
		if u.DockerImage == nil || u.Quantity != nil || u.Size != nil {
			writeAPIError(w, http.StatusUnprocessableEntity, "invalid_params",
				"Each update of a docker release needs type and docker_image only.")
			return
		}
		img := *u.DockerImage
		if !imageIDRE.MatchString(img) {
			writeAPIError(w, http.StatusUnprocessableEntity, "invalid_params",
				fmt.Sprintf("Invalid docker_image %q for process type %s.", img, u.Type))
			return
		}
		if !s.pushed[a.name+"/"+u.Type][img] {
			writeAPIError(w, http.StatusUnprocessableEntity, "invalid_params",
				fmt.Sprintf("Couldn't find the docker image %s in registry repository %s/%s.", img, a.name, u.Type))
			return
		}
		images[u.Type] = img
	}
	types := make([]string, 0, len(images))
	for t := range images {
		types = append(types, t)
	}
	sort.Strings(types)
	var parts []string
	for _, t := range types {
		parts = append(parts, fmt.Sprintf("%s (%s)", t, strings.TrimPrefix(images[t], "sha256:")[:12]))
	}
	// Heroku ignores a release of the images the current release already
	// runs: no new release, the formation answered as it is.
	if cur := currentRelease(a); cur == nil || !maps.Equal(cur.Images, images) {
		desc := "Deployed " + strings.Join(parts, ", ")
		status := "succeeded"
		if _, ok := images["release"]; ok {
			status = "pending"
		}
		rel := s.addRelease(a, desc, images, status)
		if status == "pending" {
			s.outputs[rel.ID] = "Running release command...\n"
		}
	}
	out := []hk.Formation{}
	for _, t := range types {
		if f := a.formation[t]; f != nil {
			out = append(out, formationJSON(a, f))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// scale applies quantity/size updates, all or none.
func (s *Server) scale(w http.ResponseWriter, a *app, updates []formationUpdate) {
	for _, u := range updates {
		if a.formation[u.Type] == nil {
			writeAPIError(w, http.StatusNotFound, "not_found", fmt.Sprintf("Couldn't find that process type (%s).", u.Type))
			return
		}
		if u.Quantity != nil && *u.Quantity < 0 {
			writeAPIError(w, http.StatusUnprocessableEntity, "invalid_params", "Quantity must be a non-negative integer.")
			return
		}
		if u.Size != nil && !dynoSizes[strings.ToLower(*u.Size)] {
			writeAPIError(w, http.StatusUnprocessableEntity, "invalid_params", fmt.Sprintf("Invalid dyno size %q.", *u.Size))
			return
		}
	}
	now := s.now().UTC()
	out := []hk.Formation{}
	for _, u := range updates {
		f := a.formation[u.Type]
		if u.Quantity != nil {
			f.Quantity = *u.Quantity
		}
		if u.Size != nil {
			f.Size = *u.Size
		}
		f.UpdatedAt = now
		out = append(out, formationJSON(a, f))
	}
	writeJSON(w, http.StatusOK, out)
}

// currentRelease is the release the app runs, or nil.
func currentRelease(a *app) *Release {
	for i := len(a.releases) - 1; i >= 0; i-- {
		if a.releases[i].Current {
			return a.releases[i]
		}
	}
	return nil
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

// patchConfigVars sets (or, with null, removes) config vars. Like Heroku,
// every change makes a new release that runs the current images.
func (s *Server) patchConfigVars(w http.ResponseWriter, r *http.Request) {
	var body map[string]*string
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil || len(body) == 0 {
		writeAPIError(w, http.StatusBadRequest, "bad_request", "Invalid JSON in the request body.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupApp(w, r)
	if a == nil {
		return
	}
	if a.configVars == nil {
		a.configVars = map[string]string{}
	}
	var set, removed []string
	for k, v := range body {
		if v == nil {
			delete(a.configVars, k)
			removed = append(removed, k)
		} else {
			a.configVars[k] = *v
			set = append(set, k)
		}
	}
	sort.Strings(set)
	sort.Strings(removed)
	var desc string
	switch {
	case len(set) > 0:
		desc = "Set " + strings.Join(set, ", ") + " config vars"
	default:
		desc = "Remove " + strings.Join(removed, ", ") + " config vars"
	}
	var images map[string]string
	if cur := currentRelease(a); cur != nil {
		images = cur.Images
	}
	s.addRelease(a, desc, images, "succeeded")
	writeJSON(w, http.StatusOK, a.configVars)
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
