package herokustub

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	hk "github.com/heroku/heroku-go/v5"
)

// releaseAnswer is a release as Heroku writes it: heroku-go v5's Release,
// with a status that may be null (legacy releases; heroku.md "Statuses").
type releaseAnswer struct {
	hk.Release
	Status *string `json:"status"`
}

func (s *Server) releaseJSON(r *http.Request, a *app, rel *Release) releaseAnswer {
	var out releaseAnswer
	out.ID, out.Version, out.Current = rel.ID, rel.Version, rel.Current
	if rel.Status != "" {
		st := rel.Status
		out.Status = &st
		out.Release.Status = st
	}
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

// Paging of list answers (heroku.md "Ranges").
const (
	defaultPageSize = 200
	maxPageSize     = 1000
)

// listRange is a parsed Range header:
// "<field> [[|]]<start>..[<end>[[]][; max=N][, order=asc|desc]".
// The start is a bound, not a key that must exist; "]" before it excludes
// it. "[" after the end excludes the end.
type listRange struct {
	field              string
	start, end         string
	startExcl, endExcl bool
	max                int
	desc               bool
}

var rangeRE = regexp.MustCompile(`^\s*([a-z_]+)\s+([\[\]]?)([^.;\s\[\]]*)\.\.([^;,\s\[\]]*)([\[\]]?)\s*(?:;\s*(.*))?$`)

func parseRange(h string, fields ...string) (listRange, error) {
	lr := listRange{field: fields[0], max: defaultPageSize}
	if strings.TrimSpace(h) == "" {
		return lr, nil
	}
	m := rangeRE.FindStringSubmatch(h)
	if m == nil {
		return lr, fmt.Errorf("invalid Range %q", h)
	}
	known := false
	for _, f := range fields {
		known = known || f == m[1]
	}
	if !known {
		return lr, fmt.Errorf("range field %q is not one of %s", m[1], strings.Join(fields, ", "))
	}
	lr.field, lr.start, lr.end = m[1], m[3], m[4]
	lr.startExcl, lr.endExcl = m[2] == "]", m[5] == "["
	if lr.field == "version" {
		for _, b := range []string{lr.start, lr.end} {
			if _, err := strconv.Atoi(b); b != "" && err != nil {
				return lr, fmt.Errorf("version bound %q is not a number", b)
			}
		}
	}
	for _, p := range strings.FieldsFunc(m[6], func(r rune) bool { return r == ',' || r == ';' }) {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch k {
		case "max":
			n, err := strconv.Atoi(v)
			// [U] Whether Heroku clamps a max over 1000 or refuses it is
			// not known; the stand-in refuses it.
			if err != nil || n < 1 || n > maxPageSize {
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

// compareKey orders two keys of the range's field.
func (lr listRange) compareKey(a, b string) int {
	if lr.field == "version" {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return x - y
	}
	return strings.Compare(a, b)
}

// within says whether key lies inside the range's bounds, in its order.
func (lr listRange) within(key string) bool {
	dir := 1
	if lr.desc {
		dir = -1
	}
	if lr.start != "" {
		c := dir * lr.compareKey(key, lr.start)
		if c < 0 || (c == 0 && lr.startExcl) {
			return false
		}
	}
	if lr.end != "" {
		c := dir * lr.compareKey(key, lr.end)
		if c > 0 || (c == 0 && lr.endExcl) {
			return false
		}
	}
	return true
}

// next is the Next-Range of a truncated page that ended at last: Heroku's
// exclusive form, "version ]41..; max=50" (heroku.md "Ranges").
// [U] The order and an end bound are carried over as the request wrote them.
func (lr listRange) next(last string) string {
	end := lr.end
	if end != "" && lr.endExcl {
		end += "["
	}
	out := fmt.Sprintf("%s ]%s..%s; max=%d", lr.field, last, end, lr.max)
	if lr.desc {
		out += ", order=desc"
	}
	return out
}

func (s *Server) listReleases(w http.ResponseWriter, r *http.Request) {
	lr, err := parseRange(r.Header.Get("Range"), "id", "version")
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
	key := func(rel *Release) string { return rel.ID }
	if lr.field == "version" {
		key = func(rel *Release) string { return strconv.Itoa(rel.Version) }
	}
	var rels []*Release
	for _, rel := range a.releases {
		if lr.within(key(rel)) {
			rels = append(rels, rel)
		}
	}
	sort.Slice(rels, func(i, j int) bool {
		c := lr.compareKey(key(rels[i]), key(rels[j]))
		if lr.desc {
			return c > 0
		}
		return c < 0
	})
	status := http.StatusOK
	if len(rels) > lr.max {
		rels = rels[:lr.max]
		status = http.StatusPartialContent
		w.Header().Set("Next-Range", lr.next(key(rels[len(rels)-1])))
	}
	out := make([]releaseAnswer, 0, len(rels))
	for _, rel := range rels {
		out = append(out, s.releaseJSON(r, a, rel))
	}
	// [U] Content-Range's exact text is not documented; the stand-in
	// writes "<field> <first>..<last>; max=<N>" for a non-empty page.
	if len(rels) > 0 {
		w.Header().Set("Content-Range", fmt.Sprintf("%s %s..%s; max=%d", lr.field, key(rels[0]), key(rels[len(rels)-1]), lr.max))
	}
	w.Header().Set("Accept-Ranges", "id, version")
	writeJSON(w, status, out)
}

func findRelease(a *app, idOrVersion string) *Release {
	for _, rel := range a.releases {
		if rel.ID == idOrVersion || strconv.Itoa(rel.Version) == idOrVersion {
			return rel
		}
	}
	return nil
}

func (s *Server) getRelease(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupApp(w, r)
	if a == nil {
		return
	}
	rel := findRelease(a, r.PathValue("release"))
	if rel == nil {
		writeNotFound(w, "release", "Couldn't find that release.")
		return
	}
	writeJSON(w, http.StatusOK, s.releaseJSON(r, a, rel))
}

// rollback is POST /apps/{app}/releases {"release": id}: a new release that
// runs the images of the one named (heroku-go schema "Release Rollback").
// Like every new release it runs the release phase when its images hold a
// release image (Dev Center "Release Phase").
func (s *Server) rollback(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Release string `json:"release"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody)).Decode(&body); err != nil || body.Release == "" {
		writeAPIError(w, http.StatusBadRequest, "bad_request", "Invalid JSON in the request body.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupApp(w, r)
	if a == nil {
		return
	}
	target := findRelease(a, body.Release)
	if target == nil {
		writeNotFound(w, "release", "Couldn't find that release.")
		return
	}
	if target.Status == "expired" {
		// Expired releases cannot be rolled back to (heroku.md
		// "Retention"). [U] Heroku's id and text for that refusal.
		writeAPIError(w, http.StatusUnprocessableEntity, "invalid_params",
			fmt.Sprintf("v%d has expired: its artifacts were destroyed and it cannot be rolled back to.", target.Version))
		return
	}
	rel := s.newRelease(a, fmt.Sprintf("Rollback to v%d", target.Version), copyMap(target.Images))
	writeJSON(w, http.StatusCreated, s.releaseJSON(r, a, rel))
}

// newRelease makes a release of images: pending while they hold a release
// image (the release phase runs for every new release then, even when the
// request did not name "release"; Dev Center "Release Phase"), current
// otherwise.
func (s *Server) newRelease(a *app, desc string, images map[string]string) *Release {
	if _, ok := images["release"]; ok {
		rel := s.addRelease(a, desc, images, "pending")
		if s.runImages {
			s.startReleasePhase(a, rel)
			return rel
		}
		s.outputs[rel.ID] = "Running release command...\n"
		return rel
	}
	return s.addRelease(a, desc, images, "succeeded")
}

// formationImages is the image set the app's formation runs, release image
// included; nil when it runs none.
func formationImages(a *app) map[string]string {
	var out map[string]string
	set := func(t, img string) {
		if img == "" {
			return
		}
		if out == nil {
			out = map[string]string{}
		}
		out[t] = img
	}
	for t, f := range a.formation {
		set(t, f.DockerImage)
	}
	set("release", a.releaseImage)
	return out
}

// patchConfigVars sets (or, with null, removes) config vars (heroku.md
// "Platform API in general": null deletes) and answers 200 with every
// config var of the app (heroku-go schema "Config Vars Update"). Like
// Heroku, every request makes a new release that runs the formation's
// images, even when no value changed (Dev Center "Configuration and Config
// Vars": "Whenever you set or remove a config var using any method, your
// app is restarted and a new release is created"), and runs the release
// phase when the formation holds a release image (heroku.md "Release
// phase": a config var change made by a user). Releases made by add-ons
// skip the release phase; the stand-in has no add-ons.
// [U] A body that is not an object of strings and nulls, or an empty
// object, is refused with 400 bad_request; Heroku's answer to them is not
// known. Names are not checked: whether Heroku refuses a name its Dev
// Center advises against (a hyphen, "__", "HEROKU_") is not known.
func (s *Server) patchConfigVars(w http.ResponseWriter, r *http.Request) {
	var body map[string]*string
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody)).Decode(&body); err != nil || len(body) == 0 {
		writeAPIError(w, http.StatusBadRequest, "bad_request", "Invalid JSON in the request body.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupApp(w, r)
	if a == nil {
		return
	}
	s.setConfigVarsLocked(a, body)
	writeJSON(w, http.StatusOK, a.configVars)
}

// SetConfigVars changes config vars as a user's `heroku config:set` does
// (a nil value removes one): a new release, in its release phase while the
// formation holds a release image.
func (s *Server) SetConfigVars(appName string, vars map[string]*string) error {
	if len(vars) == 0 {
		return fmt.Errorf("herokustub: no config vars to set")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[appName]
	if a == nil {
		return fmt.Errorf("herokustub: no app %q", appName)
	}
	s.setConfigVarsLocked(a, vars)
	return nil
}

// ConfigVars returns the app's config vars.
func (s *Server) ConfigVars(appName string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.apps[appName]; a != nil {
		return copyMap(a.configVars)
	}
	return nil
}

func (s *Server) setConfigVarsLocked(a *app, vars map[string]*string) {
	if a.configVars == nil {
		a.configVars = map[string]string{}
	}
	var set, removed []string
	for k, v := range vars {
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
	// "Set FOO config vars" / "Remove FOO config vars", as `heroku
	// releases` shows a config change. [U] The ", " join of several names
	// and the text of a request that both sets and removes (here: the set
	// names only) are not documented; removing a var the app lacks still
	// makes a release here, also [U].
	var desc string
	switch {
	case len(set) > 0:
		desc = "Set " + strings.Join(set, ", ") + " config vars"
	default:
		desc = "Remove " + strings.Join(removed, ", ") + " config vars"
	}
	s.newRelease(a, desc, formationImages(a))
}
