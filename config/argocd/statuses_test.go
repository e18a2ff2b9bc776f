// Package argocd_test checks how tools outside herokunix read a
// HerokuNixApp's status: Argo CD through health.lua, and kstatus (cli-utils,
// as used by kpt, Config Sync and Flux's health checks). Both tests run over
// one table of statuses, each as summarize() in
// controllers/herokunixapp_controller.go writes it at the end of a pass.
package argocd_test

import (
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/config/internal/apisource"
)

// Argo CD health statuses.
const (
	healthy     = "Healthy"
	progressing = "Progressing"
	degraded    = "Degraded"
	suspended   = "Suspended"
)

// statusCase is one HerokuNixApp as the API server returns it, and how
// Argo CD (health.lua) and kstatus must read it.
type statusCase struct {
	name string
	// object is metadata (generation, deletionTimestamp…), spec overrides
	// and status, in YAML; the rest of a valid resource is added.
	object string
	// argo is the health status; argoMessage must occur in its message.
	argo, argoMessage string
	kstatus           status.Status
	// produced is false for defensive rows summarize() never writes.
	produced bool
}

const ts = `lastTransitionTime: "2026-01-02T03:04:05Z"`

// cond is one condition in flow-style YAML, as setCondition writes it.
func cond(typ, st, reason, msg string, gen int) string {
	return "  - {type: " + typ + ", status: \"" + st + "\", reason: " + reason +
		", message: " + strconv.Quote(msg) + ", observedGeneration: " + strconv.Itoa(gen) + ", " + ts + "}\n"
}

// The conditions of the sub-steps that recur below.
var (
	builtOK     = cond("Built", "True", herokunixv1.ReasonBuildSucceeded, "built github:acme/shop/9f2c1e0aa1b2", 2)
	releasedOK  = cond("Released", "True", herokunixv1.ReasonReleased, "release v42 of acme-shop succeeded", 2)
	readyOK     = cond("Ready", "True", herokunixv1.ReasonReleased, "release v42 of acme-shop runs 9f2c1e0aa1b2", 2)
	deployedRel = "  release: {id: 01234567-89ab-cdef-0123-456789abcdef, version: 42, name: v42, status: succeeded}\n"
)

// stalledBy is what markStalled writes for a stalling step error.
func stalledBy(reason, msg string, extra ...string) string {
	return "status:\n  observedGeneration: 2\n  conditions:\n" +
		cond("Stalled", "True", reason, msg, 2) + cond("Ready", "False", reason, msg, 2) + strings.Join(extra, "")
}

// reconcilingBy is what markReconciling writes for a wait or a retried error.
func reconcilingBy(reason, msg string, extra ...string) string {
	return "status:\n  observedGeneration: 2\n  conditions:\n" +
		cond("Reconciling", "True", reason, msg, 2) + cond("Ready", "False", reason, msg, 2) + strings.Join(extra, "")
}

var statusCases = []statusCase{
	{
		name:   "a new resource the controller has not seen yet",
		object: "metadata: {generation: 1}\n",
		argo:   progressing, argoMessage: "waiting for the controller",
		// kstatus cannot tell a resource without status from one whose
		// controller writes none: it reads it as Current.
		kstatus: status.CurrentStatus, produced: true,
	},
	{
		name: "a changed spec the controller has not observed yet",
		object: "metadata: {generation: 3}\nstatus:\n  observedGeneration: 2\n  conditions:\n" + readyOK + builtOK + releasedOK +
			deployedRel,
		argo: progressing, argoMessage: "waiting for the controller to observe generation 3",
		kstatus: status.InProgressStatus, produced: true,
	},
	{
		name: "a build is running",
		object: reconcilingBy(herokunixv1.ReasonBuildRunning, "building github:acme/shop?ref=main",
			cond("Built", "False", herokunixv1.ReasonBuildRunning, "building github:acme/shop?ref=main", 2)),
		argo: progressing, argoMessage: "BuildRunning: building github:acme/shop?ref=main",
		kstatus: status.InProgressStatus, produced: true,
	},
	{
		name: "a release is running its release phase",
		object: reconcilingBy(herokunixv1.ReasonReleasePending, "release v43 is running its release phase", builtOK,
			cond("Released", "False", herokunixv1.ReasonReleasePending, "release v43 is running its release phase", 2)),
		argo: progressing, argoMessage: "ReleasePending: release v43 is running its release phase",
		kstatus: status.InProgressStatus, produced: true,
	},
	{
		name:   "deployed",
		object: "status:\n  observedGeneration: 2\n  conditions:\n" + builtOK + releasedOK + readyOK + deployedRel,
		argo:   healthy, argoMessage: "release v42 of acme-shop runs 9f2c1e0aa1b2",
		kstatus: status.CurrentStatus, produced: true,
	},
	{
		name: "a refresh of a moving ref failed while the release keeps running",
		object: "status:\n  observedGeneration: 2\n  conditions:\n" +
			cond("Built", "False", herokunixv1.ReasonBuildFailed, "build container exited 1: error: builder failed", 2) + releasedOK +
			cond("Ready", "True", herokunixv1.ReasonReleased, "release v42 of acme-shop runs 9f2c1e0aa1b2; the latest refresh failed to build (see Built)", 2) +
			deployedRel,
		argo: healthy, argoMessage: "release v42 of acme-shop runs 9f2c1e0aa1b2",
		kstatus: status.CurrentStatus, produced: true,
	},
	{
		name: "drift observed with driftPolicy Observe",
		object: "spec: {driftPolicy: Observe}\nstatus:\n  observedGeneration: 2\n  conditions:\n" + builtOK + releasedOK +
			cond("Stalled", "True", herokunixv1.ReasonDriftDetected, "Heroku runs v43, which this resource did not make (it made v42)", 2) +
			cond("Ready", "False", herokunixv1.ReasonDriftDetected, "Heroku runs v43, which this resource did not make (it made v42)", 2) +
			deployedRel,
		argo: degraded, argoMessage: "DriftDetected: Heroku runs v43",
		// Only a person can settle observed drift.
		kstatus: status.FailedStatus, produced: true,
	},
	{
		name: "suspended after a deploy",
		object: "spec: {suspend: true}\nstatus:\n  observedGeneration: 2\n  conditions:\n" + builtOK + releasedOK + readyOK +
			deployedRel,
		argo: suspended, argoMessage: "suspended",
		// The release keeps running: Ready stays True, kstatus Current.
		kstatus: status.CurrentStatus, produced: true,
	},
	{
		name: "suspended before its first deploy",
		object: "spec: {suspend: true}\nstatus:\n  observedGeneration: 1\n  conditions:\n" +
			cond("Ready", "False", herokunixv1.ReasonSuspended, "reconciliation is suspended; this spec is not deployed", 1),
		argo: suspended, argoMessage: "suspended",
		// kstatus reads a False Ready with neither Reconciling nor Stalled as
		// InProgress; nothing herokunix can set says "paused" to kstatus.
		kstatus: status.InProgressStatus, produced: true,
	},
	{
		name:   "retrying an error no step classified",
		object: reconcilingBy(herokunixv1.ReasonProgressing, "retrying: listing resources for app acme-shop: connection refused"),
		argo:   progressing, argoMessage: "Progressing: retrying: listing resources",
		kstatus: status.InProgressStatus, produced: true,
	},
	{
		name: "rate limited by Heroku",
		object: reconcilingBy(herokunixv1.ReasonRateLimited, "retrying: reading the current release: rate limited, retry after 1m0s", builtOK,
			cond("Released", "False", herokunixv1.ReasonRateLimited, "reading the current release: rate limited, retry after 1m0s", 2)),
		argo: progressing, argoMessage: "RateLimited: retrying",
		kstatus: status.InProgressStatus, produced: true,
	},
	{
		name: "Heroku unavailable",
		object: reconcilingBy(herokunixv1.ReasonHerokuUnavailable, "retrying: releasing images: 503 Service Unavailable", builtOK,
			cond("Released", "False", herokunixv1.ReasonHerokuUnavailable, "releasing images: 503 Service Unavailable", 2)),
		argo: progressing, argoMessage: "HerokuUnavailable: retrying",
		kstatus: status.InProgressStatus, produced: true,
	},
	{
		name: "Heroku accepted the images but made no release (retried)",
		object: reconcilingBy(herokunixv1.ReasonReleaseFailed, "retrying: Heroku accepted the images but made no new release (latest is v42)", builtOK,
			cond("Released", "False", herokunixv1.ReasonReleaseFailed, "Heroku accepted the images but made no new release (latest is v42)", 2)),
		argo: progressing, argoMessage: "ReleaseFailed: retrying",
		kstatus: status.InProgressStatus, produced: true,
	},
	{
		name: "a refresh of a moving ref failed to build (retried after the interval)",
		object: reconcilingBy(herokunixv1.ReasonBuildFailed, "retrying: build shop-build-7d1f3a failed; the running Heroku release is untouched: error: attribute missing",
			cond("Built", "False", herokunixv1.ReasonBuildFailed, "error: attribute missing", 2), releasedOK, deployedRel),
		argo: progressing, argoMessage: "BuildFailed: retrying",
		kstatus: status.InProgressStatus, produced: true,
	},
	{
		name: "being deleted while scaling to zero is retried",
		object: "metadata: {generation: 2, deletionTimestamp: \"2026-01-02T03:04:05Z\", finalizers: [herokunix.dev/finalizer]}\n" +
			"spec: {deletionPolicy: ScaleToZero}\n" +
			reconcilingBy(herokunixv1.ReasonDeleting, "retrying: scaling to zero before deletion: 503 Service Unavailable", builtOK, releasedOK),
		argo: progressing, argoMessage: "Deleting: retrying",
		// kstatus reads any deletionTimestamp as Terminating.
		kstatus: status.TerminatingStatus, produced: true,
	},
	{
		name: "the build failed",
		object: stalledBy(herokunixv1.ReasonBuildFailed, "build shop-build-7d1f3a failed; the running Heroku release is untouched: error: attribute missing",
			cond("Built", "False", herokunixv1.ReasonBuildFailed, "error: attribute missing", 2)),
		argo: degraded, argoMessage: "BuildFailed: build shop-build-7d1f3a failed",
		kstatus: status.FailedStatus, produced: true,
	},
	{
		name:   "the API-key Secret is missing",
		object: stalledBy(herokunixv1.ReasonCredentialsNotFound, "Secret team-a/heroku not found"),
		argo:   degraded, argoMessage: "CredentialsNotFound: Secret team-a/heroku not found",
		kstatus: status.FailedStatus, produced: true,
	},
	{
		name: "the Heroku app is not on the container stack",
		object: stalledBy(herokunixv1.ReasonStackNotContainer, "reading Heroku app acme-shop: app acme-shop uses stack heroku-24, not container", builtOK,
			cond("Released", "False", herokunixv1.ReasonStackNotContainer, "reading Heroku app acme-shop: app acme-shop uses stack heroku-24, not container", 2)),
		argo: degraded, argoMessage: "StackNotContainer:",
		kstatus: status.FailedStatus, produced: true,
	},
	{
		name: "the Heroku app does not exist",
		object: stalledBy(herokunixv1.ReasonAppNotFound, "reading Heroku app acme-shop: not found", builtOK,
			cond("Released", "False", herokunixv1.ReasonAppNotFound, "reading Heroku app acme-shop: not found", 2)),
		argo: degraded, argoMessage: "AppNotFound:",
		kstatus: status.FailedStatus, produced: true,
	},
	{
		name: "the API key is refused",
		object: stalledBy(herokunixv1.ReasonUnauthorized, "reading Heroku app acme-shop: unauthorized", builtOK,
			cond("Released", "False", herokunixv1.ReasonUnauthorized, "reading Heroku app acme-shop: unauthorized", 2)),
		argo: degraded, argoMessage: "Unauthorized:",
		kstatus: status.FailedStatus, produced: true,
	},
	{
		name: "Heroku refused the release",
		object: stalledBy(herokunixv1.ReasonReleaseFailed, "releasing images: invalid params", builtOK,
			cond("Released", "False", herokunixv1.ReasonReleaseFailed, "releasing images: invalid params", 2)),
		argo: degraded, argoMessage: "ReleaseFailed: releasing images",
		kstatus: status.FailedStatus, produced: true,
	},
	{
		name: "the release phase failed",
		object: stalledBy(herokunixv1.ReasonReleasePhaseFailed, "release v43 failed its release phase; Heroku keeps running the previous release", builtOK,
			cond("Released", "False", herokunixv1.ReasonReleasePhaseFailed, "release v43 failed its release phase; Heroku keeps running the previous release", 2)),
		argo: degraded, argoMessage: "ReleasePhaseFailed: release v43 failed",
		kstatus: status.FailedStatus, produced: true,
	},
	{
		name:   "another resource already deploys the Heroku app",
		object: stalledBy(herokunixv1.ReasonAppConflict, "Heroku app acme-shop is already deployed by HerokuNixApp team-b/shop; delete one of them"),
		argo:   degraded, argoMessage: "AppConflict: Heroku app acme-shop is already deployed",
		kstatus: status.FailedStatus, produced: true,
	},
	{
		name:   "defensive: Ready False alone",
		object: "status:\n  observedGeneration: 2\n  conditions:\n" + cond("Ready", "False", herokunixv1.ReasonBuildFailed, "something failed", 2),
		argo:   degraded, argoMessage: "BuildFailed: something failed",
		kstatus: status.InProgressStatus,
	},
	{
		name:   "defensive: observed, but no Ready condition",
		object: "status:\n  observedGeneration: 2\n  conditions:\n" + builtOK,
		argo:   progressing, argoMessage: "waiting for the controller",
		kstatus: status.CurrentStatus,
	},
}

// base is the rest of a valid HerokuNixApp.
const base = `apiVersion: herokunix.dev/v1alpha1
kind: HerokuNixApp
metadata:
  name: shop
  namespace: team-a
  generation: 2
spec:
  appName: acme-shop
  flake: github:acme/shop?ref=main
  processes:
    web: {attribute: packages.x86_64-linux.web, command: [bin/server]}
  credentialsSecretRef: {name: heroku, key: apiKey}
`

// unstructured returns the case's resource, checked against the API types.
func (c statusCase) unstructured(t *testing.T) *unstructured.Unstructured {
	t.Helper()
	var obj, over map[string]any
	if err := yaml.Unmarshal([]byte(base), &obj); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(c.object), &over); err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	for _, k := range []string{"metadata", "spec"} {
		if m, ok := over[k].(map[string]any); ok {
			for kk, v := range m {
				obj[k].(map[string]any)[kk] = v
			}
		}
	}
	if st, ok := over["status"]; ok {
		obj["status"] = st
	}
	// Every case must be a HerokuNixApp the API could hold.
	b, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var typed herokunixv1.HerokuNixApp
	if err := yaml.UnmarshalStrict(b, &typed); err != nil {
		t.Fatalf("%s: not a valid HerokuNixApp: %v", c.name, err)
	}
	// Decode as a client does, so integers are int64 as on the wire.
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	return u
}

// TestStatusTableIsWhatSummarizeWrites checks each produced case against
// the rules of summarize(): Ready is always set; at most one of Stalled and
// Reconciling is True and Ready then carries its reason and message; every
// reason in api/v1alpha1/conditions.go appears.
func TestStatusTableIsWhatSummarizeWrites(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range statusCases {
		var app herokunixv1.HerokuNixApp
		u := c.unstructured(t)
		b, _ := yaml.Marshal(u.Object)
		if err := yaml.Unmarshal(b, &app); err != nil {
			t.Fatal(err)
		}
		conds := map[string]int{}
		for i, cd := range app.Status.Conditions {
			seen[cd.Reason] = true
			if _, dup := conds[cd.Type]; dup {
				t.Errorf("%s: condition %s twice", c.name, cd.Type)
			}
			conds[cd.Type] = i
		}
		if !c.produced || app.Status.ObservedGeneration == 0 {
			continue
		}
		ri, ok := conds[herokunixv1.ConditionReady]
		if !ok {
			t.Errorf("%s: summarize always sets Ready", c.name)
			continue
		}
		ready := app.Status.Conditions[ri]
		si, stalled := conds[herokunixv1.ConditionStalled]
		ci, reconciling := conds[herokunixv1.ConditionReconciling]
		switch {
		case stalled && reconciling:
			t.Errorf("%s: summarize never leaves both Stalled and Reconciling", c.name)
		case stalled || reconciling:
			lead := app.Status.Conditions[si]
			if reconciling {
				lead = app.Status.Conditions[ci]
			}
			if lead.Status != "True" || ready.Status != "False" || ready.Reason != lead.Reason || ready.Message != lead.Message {
				t.Errorf("%s: Ready must be False with %s's reason and message", c.name, lead.Type)
			}
		case ready.Status == "True":
			if ready.Reason != herokunixv1.ReasonReleased {
				t.Errorf("%s: Ready True has reason %s", c.name, ready.Reason)
			}
		default:
			if r := ready.Reason; r != herokunixv1.ReasonSuspended {
				t.Errorf("%s: Ready False without Stalled or Reconciling is only Suspended, not %s", c.name, r)
			}
		}
	}
	for _, r := range conditionReasons(t) {
		if !seen[r] {
			t.Errorf("no case in the status table has reason %s (api/v1alpha1/conditions.go)", r)
		}
	}
}

// conditionReasons reads every Reason* constant of api/v1alpha1/conditions.go.
func conditionReasons(t *testing.T) []string {
	t.Helper()
	out, err := apisource.Reasons("../../api/v1alpha1/conditions.go")
	if err != nil {
		t.Fatal(err)
	}
	return out
}
