// Package argocd_test checks how tools outside herokunix read a
// HerokuNixApp's status: Argo CD through health.lua, and kstatus (cli-utils,
// as used by kpt, Config Sync and Flux's health checks). Both tests run over
// one table of statuses: those controllers.conclude writes at the end of a
// pass, read from controllers/testdata/statuses.yaml (which the controllers
// test renders from conclude and keeps current), and a few written here
// that conclude does not produce (before the first pass, defensive ones).
package argocd_test

import (
	"os"
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
	// and status, in YAML; the rest of a valid resource is added. Rows from
	// controllers/testdata/statuses.yaml set full instead.
	object string
	full   map[string]any
	// argo is the health status; argoMessage must occur in its message.
	argo, argoMessage string
	kstatus           status.Status
	// produced is true for what controllers.conclude writes.
	produced bool
}

// concludedFile is what controllers.conclude writes, one resource per way
// a pass can end.
const concludedFile = "../../controllers/testdata/statuses.yaml"

// readOf says how Argo CD and kstatus must read each status in
// concludedFile, by the name of its row.
var readOf = map[string]statusCase{
	"a build is running": {argo: progressing, argoMessage: "BuildRunning: building github:acme/shop?ref=main",
		kstatus: status.InProgressStatus},
	"a release is running its release phase": {argo: progressing, argoMessage: "ReleasePending: release v43 is running its release phase",
		kstatus: status.InProgressStatus},
	"deployed": {argo: healthy, argoMessage: "release v42 of acme-shop runs 9f2c1e0aa1b2",
		kstatus: status.CurrentStatus},
	// A release succeeded, its web dynos are still starting: not yet
	// serving, so not Healthy.
	"released, its web dynos starting": {argo: progressing, argoMessage: "WaitingForDynos: release v42 succeeded; waiting for its web dynos",
		kstatus: status.InProgressStatus},
	"deployed and serving": {argo: healthy, argoMessage: "release v42 of acme-shop runs 9f2c1e0aa1b2, serving (web.1 up)",
		kstatus: status.CurrentStatus},
	"deployed with no web process": {argo: healthy, argoMessage: "release v42 of acme-shop runs 9f2c1e0aa1b2",
		kstatus: status.CurrentStatus},
	// The release runs but does not serve: only a new release can help.
	"a web dyno crashed on boot": {argo: degraded, argoMessage: "DynosCrashed: release v42 runs but does not serve",
		kstatus: status.FailedStatus},
	"the web dynos were not up after the last look": {argo: degraded, argoMessage: "DynosNotUp: the web dynos of v42 were not up",
		kstatus: status.FailedStatus},
	"deployed after a reconcile request": {argo: healthy, argoMessage: "release v42 of acme-shop runs 9f2c1e0aa1b2",
		kstatus: status.CurrentStatus},
	"a refresh of a moving ref failed while the release keeps running": {argo: healthy, argoMessage: "release v42 of acme-shop runs 9f2c1e0aa1b2",
		kstatus: status.CurrentStatus},
	// Only a person can settle observed drift.
	"drift observed with driftPolicy Observe": {argo: degraded, argoMessage: "DriftDetected: Heroku ran v43",
		kstatus: status.FailedStatus},
	// The release keeps running: Ready stays True, kstatus Current.
	"suspended after a deploy": {argo: suspended, argoMessage: "suspended", kstatus: status.CurrentStatus},
	// kstatus reads a False Ready with neither Reconciling nor Stalled as
	// InProgress; nothing herokunix can set says "paused" to kstatus.
	"suspended after a spec change":        {argo: suspended, argoMessage: "suspended", kstatus: status.InProgressStatus},
	"suspended before its first deploy":    {argo: suspended, argoMessage: "suspended", kstatus: status.InProgressStatus},
	"retrying an error no step classified": {argo: progressing, argoMessage: "Progressing: retrying: listing resources", kstatus: status.InProgressStatus},
	"a step panicked":                      {argo: progressing, argoMessage: "InternalError: retrying", kstatus: status.InProgressStatus},
	"the API key ends with a newline": {argo: degraded, argoMessage: "CredentialsInvalid: the key \"apiKey\" of Secret team-a/heroku ends with a newline",
		kstatus: status.FailedStatus},
	"rate limited by Heroku": {argo: progressing, argoMessage: "RateLimited: retrying", kstatus: status.InProgressStatus},
	"Heroku unavailable":     {argo: progressing, argoMessage: "HerokuUnavailable: retrying", kstatus: status.InProgressStatus},
	"Heroku accepted the images but made no release (retried)": {argo: progressing, argoMessage: "ReleaseFailed: retrying",
		kstatus: status.InProgressStatus},
	// kstatus reads any deletionTimestamp as Terminating.
	"being deleted while scaling to zero is retried": {argo: progressing, argoMessage: "Deleting: retrying",
		kstatus: status.TerminatingStatus},
	"the build failed": {argo: degraded, argoMessage: "BuildFailed: build shop-", kstatus: status.FailedStatus},
	"the API-key Secret is missing": {argo: degraded, argoMessage: "CredentialsNotFound: Secret team-a/heroku not found",
		kstatus: status.FailedStatus},
	"the Heroku app is not on the container stack": {argo: degraded, argoMessage: "StackNotContainer:", kstatus: status.FailedStatus},
	"the Heroku app is a Fir app":                  {argo: degraded, argoMessage: "UnsupportedGeneration:", kstatus: status.FailedStatus},
	"the Heroku app does not exist":                {argo: degraded, argoMessage: "AppNotFound:", kstatus: status.FailedStatus},
	"the namespace refuses the build pod": {argo: degraded, argoMessage: "BuildPodRefused: namespace team-a enforces the \"restricted\" Pod Security level",
		kstatus: status.FailedStatus},
	"the API key is refused":                          {argo: degraded, argoMessage: "Unauthorized:", kstatus: status.FailedStatus},
	"Heroku refused the release":                      {argo: degraded, argoMessage: "ReleaseFailed: releasing images", kstatus: status.FailedStatus},
	"the release phase failed":                        {argo: degraded, argoMessage: "ReleasePhaseFailed: release v43 failed", kstatus: status.FailedStatus},
	"another resource already deploys the Heroku app": {argo: degraded, argoMessage: "AppConflict: Heroku app acme-shop is deployed by another HerokuNixApp", kstatus: status.FailedStatus},
	"the build pod was evicted (retried)":             {argo: progressing, argoMessage: "BuildFailed: retrying: build shop-", kstatus: status.InProgressStatus},
	"a Secret that spec.config reads is missing": {argo: degraded, argoMessage: "ConfigSourceNotFound: Secret team-a/shop-db not found (config var DATABASE_URL)",
		kstatus: status.FailedStatus},
	"the manager may not read the key's Secret": {argo: degraded, argoMessage: "ReadForbidden: the manager may not read Secret team-a/heroku",
		kstatus: status.FailedStatus},
	"spec.config is over Heroku's 32 kB":  {argo: degraded, argoMessage: "ConfigInvalid: the config vars in spec.config hold", kstatus: status.FailedStatus},
	"the promotion source does not exist": {argo: degraded, argoMessage: "PromotionSourceNotFound: HerokuNixApp team-a/staging", kstatus: status.FailedStatus},
	"the promotion source is not Ready": {argo: progressing, argoMessage: "PromotionSourceNotReady: waiting for HerokuNixApp staging",
		kstatus: status.InProgressStatus},
	// Waiting for a person is progress kstatus cannot tell from any other.
	"a promotion waits for approval": {argo: progressing, argoMessage: "PromotionAwaitingApproval: promoting revision 9f2c1e0aa1b2 of staging waits for approval",
		kstatus: status.InProgressStatus},
	"promoted and released": {argo: healthy, argoMessage: "release v42 of acme-shop runs 9f2c1e0aa1b2",
		kstatus: status.CurrentStatus},
	"copying the promoted images failed": {argo: progressing, argoMessage: "PromotionCopyFailed: retrying", kstatus: status.InProgressStatus},
	"the release phase failed with output": {argo: degraded, argoMessage: "ERROR: relation \"users\" does not exist",
		kstatus: status.FailedStatus},
}

// statusCases are the rows of concludedFile, each with how it must be
// read, then the rows written here.
func statusCases(t *testing.T) []statusCase {
	t.Helper()
	b, err := os.ReadFile(concludedFile)
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		Name   string         `json:"name"`
		Object map[string]any `json:"object"`
	}
	if err := yaml.Unmarshal(b, &rows); err != nil {
		t.Fatalf("%s: %v", concludedFile, err)
	}
	var out []statusCase
	seen := map[string]bool{}
	for _, r := range rows {
		c, ok := readOf[r.Name]
		if !ok {
			t.Errorf("%s: no expectation in readOf for %q", concludedFile, r.Name)
			continue
		}
		seen[r.Name] = true
		c.name, c.full, c.produced = r.Name, r.Object, true
		out = append(out, c)
	}
	for name := range readOf {
		if !seen[name] {
			t.Errorf("readOf has %q, which %s does not", name, concludedFile)
		}
	}
	return append(out, handCases...)
}

const ts = `lastTransitionTime: "2026-01-02T03:04:05Z"`

// cond is one condition in flow-style YAML.
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

// reconcilingBy is a Reconciling status, as markReconciling writes it.
func reconcilingBy(reason, msg string, extra ...string) string {
	return "status:\n  observedGeneration: 2\n  conditions:\n" +
		cond("Reconciling", "True", reason, msg, 2) + cond("Ready", "False", reason, msg, 2) + strings.Join(extra, "")
}

// handCases are statuses conclude does not write: before the controller
// observed a generation, and defensive ones health.lua must still read.
var handCases = []statusCase{
	{
		name:   "a new resource the controller has not seen yet",
		object: "metadata: {generation: 1}\n",
		argo:   progressing, argoMessage: "waiting for the controller",
		// kstatus cannot tell a resource without status from one whose
		// controller writes none: it reads it as Current.
		kstatus: status.CurrentStatus,
	},
	{
		name: "a changed spec the controller has not observed yet",
		object: "metadata: {generation: 3}\nstatus:\n  observedGeneration: 2\n  conditions:\n" + readyOK + builtOK + releasedOK +
			deployedRel,
		argo: progressing, argoMessage: "waiting for the controller to observe generation 3",
		kstatus: status.InProgressStatus,
	},
	{
		name: "defensive: a retried build failure",
		object: reconcilingBy(herokunixv1.ReasonBuildFailed, "retrying: build shop-build-7d1f3a failed; the running Heroku release is untouched: error: attribute missing",
			cond("Built", "False", herokunixv1.ReasonBuildFailed, "error: attribute missing", 2), releasedOK, deployedRel),
		argo: progressing, argoMessage: "BuildFailed: retrying",
		kstatus: status.InProgressStatus,
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
	obj := c.full
	if obj == nil {
		var over map[string]any
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
// the rules of controllers.conclude: Ready is always set; at most one of Stalled and
// Reconciling is True and Ready then carries its reason and message; every
// reason in api/v1alpha1/conditions.go appears.
func TestStatusTableIsWhatSummarizeWrites(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range statusCases(t) {
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
			t.Errorf("%s: conclude always sets Ready", c.name)
			continue
		}
		ready := app.Status.Conditions[ri]
		si, stalled := conds[herokunixv1.ConditionStalled]
		ci, reconciling := conds[herokunixv1.ConditionReconciling]
		switch {
		case stalled && reconciling:
			t.Errorf("%s: conclude never leaves both Stalled and Reconciling", c.name)
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
