package herokustub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	hk "github.com/heroku/heroku-go/v5"
)

func formationJSON(a *app, f *Formation) hk.Formation {
	var out hk.Formation
	out.App.ID, out.App.Name = a.id, a.name
	out.ID, out.Type, out.Quantity, out.Size, out.Command = f.ID, f.Type, f.Quantity, f.Size, f.Command
	out.CreatedAt, out.UpdatedAt = f.CreatedAt, f.UpdatedAt
	return out
}

// writeFormationNotFound answers for a process type the app lacks.
// [U] Heroku's not_found names a resource (heroku.md "Errors"); that it is
// "formation" for a process type is the stand-in's choice.
func writeFormationNotFound(w http.ResponseWriter, typ string) {
	writeNotFound(w, "formation", fmt.Sprintf("Couldn't find that process type (%s).", typ))
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
		writeFormationNotFound(w, r.PathValue("type"))
		return
	}
	writeJSON(w, http.StatusOK, formationJSON(a, f))
}

// formationUpdate is one update of a formation PATCH. docker_image is in no
// schema: only the docker-releases Accept variant enables it (heroku.md
// "Releasing"). The Heroku CLI's ps:scale sends quantity as a string ("2",
// "+1", "-1"), heroku-go as a number (heroku.md "Heroku's own clients").
type formationUpdate struct {
	Type        string          `json:"type"`
	Quantity    json.RawMessage `json:"quantity"`
	Size        *string         `json:"size"`
	DockerImage *string         `json:"docker_image"`
}

// quantity reads the update's quantity against the current one; ok is
// false when it is not a number, a numeric string or a signed change.
func (u formationUpdate) quantity(current int) (q int, set, ok bool) {
	raw := bytes.TrimSpace(u.Quantity)
	if len(raw) == 0 || string(raw) == "null" {
		return current, false, true
	}
	var n int
	if json.Unmarshal(raw, &n) == nil {
		return n, true, true
	}
	var str string
	if json.Unmarshal(raw, &str) != nil {
		return 0, true, false
	}
	n, err := strconv.Atoi(strings.TrimPrefix(str, "+"))
	if err != nil {
		return 0, true, false
	}
	if strings.HasPrefix(str, "+") || strings.HasPrefix(str, "-") {
		return current + n, true, true
	}
	return n, true, true
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

// refuseDockerImages answers when the app cannot take container images,
// and says whether it did.
func refuseDockerImages(w http.ResponseWriter, a *app) bool {
	if a.generation == GenerationFir {
		// Fir apps take no container images (Dev Center "Generations":
		// "Docker and monorepo apps are unsupported on Fir").
		// [U] Heroku's status, id and text for this refusal.
		writeAPIError(w, http.StatusUnprocessableEntity, "invalid_params",
			"This app is on the Fir generation, which does not run Docker images.")
		return true
	}
	if a.buildStack != "container" {
		// Stricter than Heroku is known to be: the CLI checks the stack
		// or build stack before it PATCHes (ensureContainerStack); what
		// the PATCH itself does on another stack is [U]. Refusing keeps a
		// release from being recorded on an app that cannot run it.
		writeAPIError(w, http.StatusUnprocessableEntity, "invalid_params",
			fmt.Sprintf("This app's stack is %s; docker releases need the container stack.", a.buildStack))
		return true
	}
	return false
}

// formationImage is the image type t runs in the formation ("release": the
// release-phase image).
func formationImage(a *app, t string) string {
	if t == "release" {
		return a.releaseImage
	}
	if f := a.formation[t]; f != nil {
		return f.DockerImage
	}
	return ""
}

// dockerRelease compares each type with the formation: a type already
// running the requested image is skipped ("The process type web was not
// updated, because it is already running the specified docker image."),
// the others are updated in one new release; all unchanged makes no
// release (heroku/cli#1167, #1965; heroku.md "Per-type ignore").
// [U] The stand-in says which types it skipped in a Warning-Message
// header, one per type, which the Heroku CLI prints as a warning; how
// Heroku delivers the notice is not known.
// [U] The formation compared with is the one the current release runs: a
// pending or failed release does not count as running its images.
func (s *Server) dockerRelease(w http.ResponseWriter, a *app, updates []formationUpdate) {
	if refuseDockerImages(w, a) {
		return
	}
	requested := map[string]string{}
	for _, u := range updates {
		if u.DockerImage == nil || len(u.Quantity) > 0 || u.Size != nil {
			// Stricter than Heroku is known to be: the CLI never sends
			// quantity or size with docker_image and what Heroku does then
			// is not known. Refusing keeps a caller from believing it
			// scaled in the same request.
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
			// Stricter than Heroku is known to be: an image ID must have
			// been pushed to <app>/<type>. An image Heroku cannot find
			// would only fail at dyno boot; refusing here shows the mistake
			// at once.
			writeAPIError(w, http.StatusUnprocessableEntity, "invalid_params",
				fmt.Sprintf("Couldn't find the docker image %s in registry repository %s/%s.", img, a.name, u.Type))
			return
		}
		requested[u.Type] = img
	}
	updated := map[string]string{}
	var skipped []string
	for t, img := range requested {
		if formationImage(a, t) == img {
			skipped = append(skipped, t)
		} else {
			updated[t] = img
		}
	}
	sort.Strings(skipped)
	for _, t := range skipped {
		w.Header().Add("Warning-Message", fmt.Sprintf("The process type %s was not updated, because it is already running the specified docker image.", t))
	}
	if len(updated) > 0 {
		images := formationImages(a)
		if images == nil {
			images = map[string]string{}
		}
		for t, img := range updated {
			images[t] = img
		}
		s.newRelease(a, s.describe(updated), images)
	}
	types := make([]string, 0, len(requested))
	for t := range requested {
		types = append(types, t)
	}
	sort.Strings(types)
	out := []hk.Formation{}
	for _, t := range types {
		if f := a.formation[t]; f != nil {
			out = append(out, formationJSON(a, f))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// scale applies quantity/size updates, all or none, and answers with the
// updated entries.
func (s *Server) scale(w http.ResponseWriter, a *app, updates []formationUpdate) {
	out, ok := s.applyScale(w, a, updates)
	if ok {
		writeJSON(w, http.StatusOK, out)
	}
}

// applyScale checks every update first, then applies them all; on a bad
// update it writes Heroku's error and changes nothing.
func (s *Server) applyScale(w http.ResponseWriter, a *app, updates []formationUpdate) ([]hk.Formation, bool) {
	quantities := make([]int, len(updates))
	for i, u := range updates {
		f := a.formation[u.Type]
		if f == nil {
			writeFormationNotFound(w, u.Type)
			return nil, false
		}
		q, _, ok := u.quantity(f.Quantity)
		if !ok || q < 0 {
			writeAPIError(w, http.StatusUnprocessableEntity, "invalid_params", "Quantity must be a non-negative integer.")
			return nil, false
		}
		quantities[i] = q
		if u.Size != nil && !dynoSizes[strings.ToLower(*u.Size)] {
			writeAPIError(w, http.StatusUnprocessableEntity, "invalid_params", fmt.Sprintf("Invalid dyno size %q.", *u.Size))
			return nil, false
		}
	}
	now := s.now().UTC()
	out := []hk.Formation{}
	for i, u := range updates {
		f := a.formation[u.Type]
		f.Quantity = quantities[i]
		if u.Size != nil {
			f.Size = *u.Size
		}
		f.UpdatedAt = now
		out = append(out, formationJSON(a, f))
	}
	s.syncDynos(a)
	return out, true
}

// patchFormationType is PATCH /apps/{app}/formation/{type}. With the
// docker-releases variant and {"docker_image": null} it removes the process
// type, as the Heroku CLI's container:rm does; nothing else removes one
// (heroku.md "Removing a type"). Otherwise it scales the one type
// (heroku-go schema "Formation Update").
// [U] Removal makes no new release; the type's formation entry is deleted
// (for "release": the release image is cleared, so later releases skip the
// release phase); the answer is the entry as it was, without its image.
func (s *Server) patchFormationType(w http.ResponseWriter, r *http.Request) {
	var body map[string]json.RawMessage
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody)).Decode(&body); err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_request", "Invalid JSON in the request body.")
		return
	}
	typ := r.PathValue("type")
	version, _ := apiVersion(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupApp(w, r)
	if a == nil {
		return
	}
	img, docker := body["docker_image"]
	if !docker {
		u := formationUpdate{Type: typ, Quantity: body["quantity"]}
		if raw, ok := body["size"]; ok {
			var size string
			if json.Unmarshal(raw, &size) != nil {
				writeAPIError(w, http.StatusUnprocessableEntity, "invalid_params", "Invalid dyno size.")
				return
			}
			u.Size = &size
		}
		s.scaleOne(w, a, u)
		return
	}
	if version != versionDocker {
		writeAPIError(w, http.StatusUnprocessableEntity, "invalid_params",
			"docker_image is only accepted with `Accept: application/vnd.heroku+json; version=3.docker-releases`.")
		return
	}
	if string(bytes.TrimSpace(img)) != "null" {
		// [U] Releasing one type through this path is not something any
		// known client does; the stand-in accepts only removal here.
		writeAPIError(w, http.StatusUnprocessableEntity, "invalid_params",
			"Only {\"docker_image\": null} is accepted for a single process type.")
		return
	}
	if refuseDockerImages(w, a) {
		return
	}
	now := s.now().UTC()
	if typ == "release" {
		if a.releaseImage == "" {
			writeFormationNotFound(w, typ)
			return
		}
		a.releaseImage = ""
		writeJSON(w, http.StatusOK, formationJSON(a, &Formation{ID: newID(), Type: typ, Size: defaultSize, CreatedAt: now, UpdatedAt: now}))
		return
	}
	f := a.formation[typ]
	if f == nil {
		writeFormationNotFound(w, typ)
		return
	}
	delete(a.formation, typ)
	f.DockerImage, f.UpdatedAt = "", now
	s.syncDynos(a)
	writeJSON(w, http.StatusOK, formationJSON(a, f))
}

// scaleOne scales a single process type and answers with it.
func (s *Server) scaleOne(w http.ResponseWriter, a *app, u formationUpdate) {
	if out, ok := s.applyScale(w, a, []formationUpdate{u}); ok {
		writeJSON(w, http.StatusOK, out[0])
	}
}
