package build

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"strings"
	"time"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
)

// Desired is the build the spec asks for now.
type Desired struct {
	// Name identifies the build (and names its Job).
	Name string
	// SpecHash fingerprints the spec's build inputs; it changes only when the
	// user changes what is built.
	SpecHash string
	Request  artifact.BuildRequest
	Timeout  time.Duration
	// Background is true when images built from this spec are deployed
	// already, so the build (a refresh of a moving ref, or a retry) runs
	// while they keep serving, and its failure stalls nothing.
	Background bool
}

const defaultBuildTimeout = 30 * time.Minute

// DesiredFor decides which build should exist. It is a pure function of
// the spec, the builds recorded in status, and the time. A new spec (or one
// returned to) gets its first build; a running build is followed; a moving ref is refreshed
// once the interval has passed since the last build; forceRefresh (a
// reconcile-now request) refreshes at once, or retries a failed build.
func DesiredFor(app *herokunixv1.HerokuNixApp, now time.Time, forceRefresh bool) Desired {
	req := artifact.BuildRequest{
		Flake:             app.Spec.Flake,
		Processes:         map[string]artifact.BuildProcess{},
		Substituters:      app.Spec.Build.Substituters,
		TrustedPublicKeys: app.Spec.Build.TrustedPublicKeys,
	}
	for name, p := range app.Spec.Processes {
		req.Processes[name] = artifact.BuildProcess{Attribute: p.Attribute, Command: p.Command, Kind: artifact.Kind(p.Kind)}
	}
	timeout := defaultBuildTimeout
	if app.Spec.Build.Timeout != nil {
		timeout = app.Spec.Build.Timeout.Duration
	}
	specHash := Fingerprint(req, app.Spec.Build.Image, app.Spec.Build.NixConfigSecretRef, timeout.String())
	d := Desired{SpecHash: specHash, Request: req, Timeout: timeout, Name: buildName(app, specHash)}

	last := app.Status.Build
	if last == nil || last.Hash != specHash {
		if last != nil {
			// The first build of a spec is named after the build it
			// follows: a spec seen before (a revert) builds anew rather
			// than re-follow its old Job, whose result is older than what
			// runs now.
			d.Name = buildName(app, Fingerprint(specHash, last.Job))
		}
		return d
	}
	if last.CompletionTime == nil {
		d.Background = !last.Repush && last.SucceededHash == specHash && len(app.Status.Images) > 0
		if d.Background && isMovingRef(app.Spec.Flake) {
			d.Request.SkipIfRevision = app.Status.Revision
		}
		d.Name = last.Job
		return d
	}
	// A new build of the same spec is named after the one it follows, so
	// each is a Job of its own and none is run twice.
	next := buildName(app, Fingerprint(specHash, last.Job, last.CompletionTime.UTC().Format(time.RFC3339)))
	if last.Repush {
		// The images must be pushed again (their release expired): build
		// in the foreground, without skipping an unchanged revision.
		d.Name = next
		return d
	}
	d.Background = last.SucceededHash == specHash && len(app.Status.Images) > 0
	if d.Background && isMovingRef(app.Spec.Flake) {
		d.Request.SkipIfRevision = app.Status.Revision
	}
	failed := last.Message != ""
	moving := isMovingRef(app.Spec.Flake)
	intervalPassed := now.Sub(last.CompletionTime.Time) >= app.Spec.IntervalDuration()
	// A request retries a failed build, or refreshes deployed images of a
	// moving ref. Without one, a moving ref is looked at again once the
	// interval has passed: to refresh deployed images, or because a failed
	// build may have a fix upstream by now.
	requested := forceRefresh && (failed || (d.Background && moving))
	due := (d.Background || failed) && moving && intervalPassed
	d.Name = last.Job
	if requested || due {
		d.Name = next
	}
	return d
}

// RefreshDue is when DesiredFor next names a new build of app's moving
// ref: an interval after the last build of the spec ended. ok is false
// when none is coming by time: a pinned ref, or no build ended.
func RefreshDue(app *herokunixv1.HerokuNixApp) (due time.Time, ok bool) {
	last := app.Status.Build
	if last == nil || last.CompletionTime == nil || !isMovingRef(app.Spec.Flake) {
		return time.Time{}, false
	}
	return last.CompletionTime.Add(app.Spec.IntervalDuration()), true
}

// Fingerprint fingerprints plain data through its JSON form (maps are
// sorted): the build's name, and what the controller records it applied.
func Fingerprint(vs ...any) string {
	h := sha256.New()
	for _, v := range vs {
		b, _ := json.Marshal(v) // only plain data is hashed; Marshal cannot fail on it
		h.Write(b)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// buildName is "<resource>-<hash10>", cut and without dots so it is a DNS
// label, as Job names (which become label values and pod name prefixes)
// are safest to be. The hash covers the resource's UID: resources whose
// names share the cut prefix and build the same spec (or a resource
// deleted and made again) never share a Job.
func buildName(app *herokunixv1.HerokuNixApp, hash string) string {
	const maxPrefix = 52 - 11
	prefix := strings.ReplaceAll(app.Name[:min(len(app.Name), maxPrefix)], ".", "-")
	return strings.TrimRight(prefix, "-") + "-" + Fingerprint(string(app.UID), hash)[:10]
}

var (
	hexRev      = regexp.MustCompile(`^[0-9a-f]{40}$`)
	revParam    = regexp.MustCompile(`[?&](rev|narHash)=`)
	pathLikeRef = regexp.MustCompile(`^(path:|/|\./|\.\./)`)
)

// isMovingRef reports whether a flake ref can lock to a different revision
// tomorrow: it names no rev and is not a local path.
func isMovingRef(ref string) bool {
	if revParam.MatchString(ref) || pathLikeRef.MatchString(ref) {
		return false
	}
	// github:owner/repo/<40-hex rev>
	base, _, _ := strings.Cut(ref, "?")
	parts := strings.Split(base, "/")
	return !hexRev.MatchString(parts[len(parts)-1])
}
