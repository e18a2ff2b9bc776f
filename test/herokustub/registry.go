package herokustub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Media types the Heroku registry accepts.
const (
	dockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	dockerConfig       = "application/vnd.docker.container.image.v1+json"
	dockerLayer        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	dockerForeign      = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	ociIndex           = "application/vnd.oci.image.index.v1+json"
	maxManifestSize    = 4 << 20
)

// writeRegistryError writes the distribution API error format.
func writeRegistryError(w http.ResponseWriter, status int, code, msg string, detail any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	type regErr struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Detail  any    `json:"detail,omitempty"`
	}
	_ = json.NewEncoder(w).Encode(map[string][]regErr{"errors": {{Code: code, Message: msg, Detail: detail}}})
}

func registryFaultError(w http.ResponseWriter, status int) {
	switch {
	case status == http.StatusTooManyRequests:
		writeRegistryError(w, status, "TOOMANYREQUESTS", "too many requests", nil)
	case status == http.StatusUnauthorized:
		writeRegistryError(w, status, "UNAUTHORIZED", "authentication required", nil)
	case status >= 500:
		writeRegistryError(w, status, "UNAVAILABLE", "service unavailable", nil)
	default:
		writeRegistryError(w, status, "UNKNOWN", http.StatusText(status), nil)
	}
}

// RegistryHandler serves the container registry (/v2/…): go-containerregistry's
// in-memory registry behind Heroku's rules. Basic auth with the API key as
// password and any user; repositories are <app>/<process-type> of an
// existing app; manifests must be Docker schema 2 with a Docker config for
// linux/amd64. It records the config digest of every manifest pushed.
//
// Cross-repository mounts (POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<repo>,
// which go-containerregistry's remote.Write sends when it copies a
// remote.Image of the same registry) are not implemented by pkg/registry:
// it ignores mount and from and answers 202 with an ordinary upload, which
// the distribution spec allows a registry to do. In practice the request
// is never made here: pkg/registry's in-memory blob store is keyed by
// digest alone, so a blob pushed to any repository is found by the HEAD
// that precedes every upload, and a copy between two apps uploads nothing.
// [U] Whether Heroku's registry honours mounts, and whether it shares
// blobs between repositories of one account, is not documented; a real
// registry scopes blobs to repositories, so the stand-in is more lenient
// there than Heroku may be.
func (s *Server) RegistryHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w}
		call := Call{Handler: "registry", Method: r.Method, Path: r.URL.Path, Accept: r.Header.Get("Accept")}
		call.Auth, call.BasicUser = authScheme(r)
		defer func() {
			call.Status = rec.status
			s.record(call)
		}()
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")

		if s.applyFault(rec, r, func(status int) { registryFaultError(rec, status) }) {
			call.Fault = true
			return
		}
		if _, pw, ok := r.BasicAuth(); !ok || s.key == "" || pw != s.key {
			w.Header().Set("WWW-Authenticate", `Basic realm="Heroku Registry"`)
			writeRegistryError(rec, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required", nil)
			return
		}
		if r.URL.Path == "/v2/" || r.URL.Path == "/v2" {
			s.registry.ServeHTTP(rec, r)
			return
		}
		repo, kind, ref, ok := splitRegistryPath(r.URL.Path)
		if !ok {
			writeRegistryError(rec, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry", nil)
			return
		}
		appName, _, _ := strings.Cut(repo, "/")
		s.mu.Lock()
		a := s.apps[appName]
		reachable := a != nil && a.generation != GenerationFir
		s.mu.Unlock()
		if !reachable {
			// A repository the key cannot reach (no such app, another
			// account) answers 401 UNAUTHORIZED, not 404 NAME_UNKNOWN
			// (heroku.md "Registry").
			// [U] A Fir app's repository answers the same: Fir takes no
			// container images and how its registry answers is not known.
			w.Header().Set("WWW-Authenticate", `Basic realm="Heroku Registry"`)
			writeRegistryError(rec, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required", nil)
			return
		}
		if kind == "manifests" && r.Method == http.MethodPut {
			s.putManifest(rec, r, repo, ref)
			return
		}
		s.registry.ServeHTTP(rec, r)
	})
}

// splitRegistryPath splits /v2/<app>/<type>/(manifests|blobs|tags)/<rest>.
func splitRegistryPath(p string) (repo, kind, ref string, ok bool) {
	rest, found := strings.CutPrefix(p, "/v2/")
	if !found {
		return "", "", "", false
	}
	parts := strings.SplitN(rest, "/", 4)
	if len(parts) < 3 {
		return "", "", "", false
	}
	if !processTypeRE.MatchString(parts[1]) || parts[0] == "" {
		return "", "", "", false
	}
	switch parts[2] {
	case "manifests", "blobs", "tags", "referrers":
	default:
		return "", "", "", false
	}
	if len(parts) == 4 {
		ref = parts[3]
	}
	return parts[0] + "/" + parts[1], parts[2], ref, true
}

// putManifest enforces Heroku's manifest rules, then stores the manifest in
// the wrapped registry and records its config digest.
func (s *Server) putManifest(w http.ResponseWriter, r *http.Request, repo, ref string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxManifestSize+1))
	if err != nil || len(body) > maxManifestSize {
		writeRegistryError(w, http.StatusBadRequest, "MANIFEST_INVALID", "manifest invalid", "manifest unreadable or too large")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct == ociIndex || ct == dockerManifestList {
		// An OCI index or a Docker manifest list (which is also how
		// attestation manifests arrive) is refused with 405 UNSUPPORTED
		// (heroku.md "Registry"; the CLI pushes with --provenance false
		// --sbom false).
		writeRegistryError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "The operation is unsupported.", nil)
		return
	}
	config, reason := s.checkManifest(r, repo, body)
	if reason != "" {
		code := "MANIFEST_INVALID"
		if strings.HasPrefix(reason, "blob unknown") {
			code = "MANIFEST_BLOB_UNKNOWN"
		}
		writeRegistryError(w, http.StatusBadRequest, code, "manifest invalid", reason)
		return
	}
	inner := r.Clone(r.Context())
	inner.Body = io.NopCloser(bytes.NewReader(body))
	inner.ContentLength = int64(len(body))
	rec := &recorder{ResponseWriter: w}
	s.registry.ServeHTTP(rec, inner)
	if rec.status/100 != 2 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pushed[repo] == nil {
		s.pushed[repo] = map[string]bool{}
	}
	s.pushed[repo][config] = true
	s.tags[repo+":"+ref] = config
	if d, _, err := v1.SHA256(bytes.NewReader(body)); err == nil {
		s.manifests[repo+"@"+config] = d.String()
	}
}

// checkManifest returns the config digest, or why the manifest is refused.
func (s *Server) checkManifest(r *http.Request, repo string, body []byte) (string, string) {
	ct := r.Header.Get("Content-Type")
	// [U] Heroku's code for a single OCI manifest is not known; the
	// stand-in answers 400 MANIFEST_INVALID.
	if ct != dockerManifest {
		return "", fmt.Sprintf("media type %q is not supported: Heroku accepts only %s", ct, dockerManifest)
	}
	var m v1.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return "", "manifest is not JSON"
	}
	if m.SchemaVersion != 2 {
		return "", "schemaVersion must be 2"
	}
	if m.MediaType != "" && string(m.MediaType) != dockerManifest {
		return "", fmt.Sprintf("manifest mediaType %q is not supported", m.MediaType)
	}
	if string(m.Config.MediaType) != dockerConfig {
		return "", fmt.Sprintf("config media type %q is not supported: Heroku accepts only %s", m.Config.MediaType, dockerConfig)
	}
	for _, l := range m.Layers {
		if l.MediaType != dockerLayer && l.MediaType != dockerForeign {
			return "", fmt.Sprintf("layer media type %q is not supported", l.MediaType)
		}
	}
	rc, err := s.blobs.Get(r.Context(), repo, m.Config.Digest)
	if err != nil {
		return "", fmt.Sprintf("blob unknown: config %s was not pushed", m.Config.Digest)
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, maxManifestSize))
	if err != nil {
		return "", "config unreadable"
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return "", "config is not JSON"
	}
	// Stricter than Heroku is known to be: Cedar dynos run linux/amd64
	// only, but whether the registry or the release checks the platform is
	// not known; Heroku's failure is at dyno boot. Refusing at push shows
	// the mistake before anything is released.
	if cfg.OS != "linux" || cfg.Architecture != "amd64" {
		return "", fmt.Sprintf("platform %s/%s is not supported: Heroku runs linux/amd64 only", cfg.OS, cfg.Architecture)
	}
	return m.Config.Digest.String(), ""
}
