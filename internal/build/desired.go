package build

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/herokunix/herokunix/internal/flakeref"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/image"
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
	// Inputs fingerprints what the build runs with besides what it
	// builds (recorded as BuildStatus.Inputs): a failed build is run again
	// when they change.
	Inputs string
	// Retry says the build retries one of the same spec and inputs that
	// failed for a reason that may pass (BuildStatus.RetryTime was due).
	Retry bool
	// ReuseFrom is, per process type, the manifest digest of the image
	// herokunix pushed last (status.images): the only image whose layers
	// the push may reuse (image.PushOptions.ReuseFrom). Not part of the
	// build's name: a new image does not make a new build.
	ReuseFrom map[string]string
}

// SecretVersions are the resourceVersions of the Secrets a build reads
// ("" for one it does not read, or that is missing): the credentials its
// push uses and spec.build.nixConfigSecretRef's.
type SecretVersions struct {
	Credentials, NixConfig string
}

const defaultBuildTimeout = 30 * time.Minute

// DesiredFor is DesiredForSecrets when the build's Secrets' versions are
// not known (or do not matter: only the spec's build is asked about).
func DesiredFor(app *herokunixv1.HerokuNixApp, now time.Time, forceRefresh bool) Desired {
	return DesiredForSecrets(app, now, forceRefresh, SecretVersions{})
}

// DesiredForSecrets decides which build should exist. It is a pure
// function of the spec, the versions of the Secrets the build reads, the
// builds recorded in status, and the time. A new spec (or one returned to)
// gets its first build; a running build is followed; a moving ref is
// refreshed once the interval has passed since the last build;
// forceRefresh (a reconcile-now request) refreshes at once, or retries a
// failed build. A failed build is also run again when what it ran with
// changed (more resources, other nodes, a repaired Secret), and when its
// retry is due after a failure that may pass (BuildStatus.RetryTime).
//
// Two fingerprints tell these apart. SpecHash covers what is built: a
// change is a new build, even of a spec that built. Inputs covers what a
// build runs with besides: resources, placement and the Secrets' versions
// decide whether a build gets through, not what it makes, so a change
// re-runs a failed build but not one that succeeded (a rotated key or
// nix.conf token must not rebuild every app), nor one still running.
func DesiredForSecrets(app *herokunixv1.HerokuNixApp, now time.Time, forceRefresh bool, secrets SecretVersions) Desired {
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
	what := []any{req, app.Spec.Build.Image, app.Spec.Build.NixConfigSecretRef, timeout.String()}
	if n := app.Spec.Build.MaxLayers; n != nil && *n != image.DefaultLayers {
		// The layer budget shapes the images. The default (which the API
		// server sets) is left out so that specs keep the hash they had
		// before it counted.
		what = append(what, *n)
	}
	specHash := Fingerprint(what...)
	d := Desired{SpecHash: specHash, Request: req, Timeout: timeout, Name: buildName(app, specHash),
		Inputs: runInputs(app, secrets), ReuseFrom: reuseFrom(app)}

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
		if d.Background && flakeref.Moving(app.Spec.Flake) {
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
	if d.Background && flakeref.Moving(app.Spec.Flake) {
		d.Request.SkipIfRevision = app.Status.Revision
	}
	failed := last.Message != ""
	moving := flakeref.Moving(app.Spec.Flake)
	intervalPassed := now.Sub(last.CompletionTime.Time) >= app.Spec.IntervalDuration()
	// A request retries a failed build, or refreshes deployed images of a
	// moving ref. Without one, a moving ref is looked at again once the
	// interval has passed: to refresh deployed images, or because a failed
	// build may have a fix upstream by now. A failed build is run again
	// once what it ran with changed ("" was recorded before inputs were),
	// or when its retry is due.
	requested := forceRefresh && (failed || (d.Background && moving))
	due := (d.Background || failed) && moving && intervalPassed
	rerun := failed && last.Inputs != "" && last.Inputs != d.Inputs
	retry := failed && last.RetryTime != nil && !now.Before(last.RetryTime.Time)
	d.Name = last.Job
	if requested || due || rerun || retry {
		d.Name = next
		// Only a retry of the same build counts towards its retries: a
		// request, a new revision or a change of inputs starts over.
		d.Retry = retry && !requested && !due && !rerun
	}
	return d
}

// runInputs fingerprints what a build runs with besides what it builds
// (see DesiredForSecrets).
func runInputs(app *herokunixv1.HerokuNixApp, secrets SecretVersions) string {
	b := app.Spec.Build
	return Fingerprint(b.Resources, b.NodeSelector, b.Tolerations, b.Affinity, b.PriorityClassName, b.ServiceAccountName, secrets)
}

// reuseFrom pins the images of status.images, which only a push's own
// result sets, for the next push to reuse layers from; nil when none.
func reuseFrom(app *herokunixv1.HerokuNixApp) map[string]string {
	if len(app.Status.Images) == 0 {
		return nil
	}
	pins := make(map[string]string, len(app.Status.Images))
	for pt, img := range app.Status.Images {
		pins[pt] = img.Digest
	}
	return pins
}

// RefreshDue is when DesiredFor next names a new build of app's moving
// ref: an interval after the last build of the spec ended. ok is false
// when none is coming by time: a pinned ref, or no build ended.
func RefreshDue(app *herokunixv1.HerokuNixApp) (due time.Time, ok bool) {
	last := app.Status.Build
	if last == nil || last.CompletionTime == nil || !flakeref.Moving(app.Spec.Flake) {
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
