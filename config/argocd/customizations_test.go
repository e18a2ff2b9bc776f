package argocd_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/test/argocdlua"
)

var update = flag.Bool("update", false, "rewrite argocd-cm-patch.yaml from resource_customizations/")

// actionNames are the resource actions, in the order Argo CD lists them.
var actionNames = []string{"reconcile", "suspend", "resume"}

func readFile(t *testing.T, path ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{customizationDir}, path...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readObject reads a testdata object, which must be a HerokuNixApp the
// API could hold, and returns it as a client decodes it.
func readObject(t *testing.T, path ...string) map[string]any {
	t.Helper()
	b := readFile(t, path...)
	var typed herokunixv1.HerokuNixApp
	if err := yaml.UnmarshalStrict(b, &typed); err != nil {
		t.Fatalf("%s: not a valid HerokuNixApp: %v", filepath.Join(path...), err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := yaml.Unmarshal(j, &obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

// health_test.yaml, in the format of Argo CD's resource_customizations:
// each object's health status and message, exactly.
func TestHealthTestYAML(t *testing.T) {
	var spec struct {
		Tests []struct {
			HealthStatus struct {
				Status  string `json:"status"`
				Message string `json:"message"`
			} `json:"healthStatus"`
			InputPath string `json:"inputPath"`
		} `json:"tests"`
	}
	if err := yaml.UnmarshalStrict(readFile(t, "health_test.yaml"), &spec); err != nil {
		t.Fatal(err)
	}
	if len(spec.Tests) < 5 {
		t.Fatalf("health_test.yaml has %d tests", len(spec.Tests))
	}
	script := readScript(t)
	seen := map[string]bool{}
	for _, tc := range spec.Tests {
		t.Run(tc.InputPath, func(t *testing.T) {
			st, msg, err := argocdlua.Health(script, readObject(t, tc.InputPath))
			if err != nil {
				t.Fatal(err)
			}
			seen[st] = true
			if st != tc.HealthStatus.Status || msg != tc.HealthStatus.Message {
				t.Errorf("health = %s %q, want %s %q", st, msg, tc.HealthStatus.Status, tc.HealthStatus.Message)
			}
		})
	}
	for _, st := range []string{healthy, progressing, degraded, suspended} {
		if !seen[st] {
			t.Errorf("no test in health_test.yaml is %s", st)
		}
	}
	// Each object in testdata/ (captured from a real reconcile by the
	// envtest TestArgoCDTestdataIsCapturedFromRealReconciles) has a test.
	entries, err := os.ReadDir(filepath.Join(customizationDir, "testdata"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		tested := false
		for _, tc := range spec.Tests {
			tested = tested || tc.InputPath == "testdata/"+e.Name()
		}
		if !tested {
			t.Errorf("testdata/%s has no test in health_test.yaml", e.Name())
		}
	}
}

// normalizeReconcileRequest checks the reconcile action's annotation is a
// timestamp of now, and replaces it by the fixed value the expected output
// holds (as Argo CD's action test normalises its time-stamped actions).
func normalizeReconcileRequest(t *testing.T, obj map[string]any, before time.Time) {
	t.Helper()
	ann, _ := obj["metadata"].(map[string]any)["annotations"].(map[string]any)
	v, _ := ann[herokunixv1.ReconcileRequestAnnotation].(string)
	at, err := time.Parse(time.RFC3339, v)
	if err != nil || at.Before(before.Truncate(time.Second)) || at.After(time.Now()) {
		t.Errorf("reconcile annotation %q is not the time of the action", v)
		return
	}
	ann[herokunixv1.ReconcileRequestAnnotation] = "0001-01-01T00:00:00Z"
}

// actions/action_test.yaml, in the format of Argo CD's
// resource_customizations: what discovery offers for each object, and what
// each action makes of an object.
func TestActionTestYAML(t *testing.T) {
	var spec struct {
		DiscoveryTests []struct {
			InputPath string             `json:"inputPath"`
			Result    []argocdlua.Action `json:"result"`
		} `json:"discoveryTests"`
		ActionTests []struct {
			Action             string `json:"action"`
			InputPath          string `json:"inputPath"`
			ExpectedOutputPath string `json:"expectedOutputPath"`
		} `json:"actionTests"`
	}
	if err := yaml.UnmarshalStrict(readFile(t, "actions", "action_test.yaml"), &spec); err != nil {
		t.Fatal(err)
	}
	discovery := string(readFile(t, "actions", "discovery.lua"))
	for _, tc := range spec.DiscoveryTests {
		t.Run("discovery/"+tc.InputPath, func(t *testing.T) {
			got, err := argocdlua.Discover(discovery, readObject(t, "actions", tc.InputPath))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.Result) {
				t.Errorf("discovery = %+v, want %+v", got, tc.Result)
			}
		})
	}
	tested := map[string]bool{}
	for _, tc := range spec.ActionTests {
		t.Run("action/"+tc.Action+"/"+tc.InputPath, func(t *testing.T) {
			tested[tc.Action] = true
			start := time.Now()
			got, err := argocdlua.Act(string(readFile(t, "actions", tc.Action, "action.lua")), readObject(t, "actions", tc.InputPath))
			if err != nil {
				t.Fatal(err)
			}
			if tc.Action == "reconcile" {
				normalizeReconcileRequest(t, got, start)
			}
			want := readObject(t, "actions", tc.ExpectedOutputPath)
			// Compare as JSON values, as Argo CD diffs objects.
			j, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			got = nil
			if err := json.Unmarshal(j, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				g, _ := yaml.Marshal(got)
				w, _ := yaml.Marshal(want)
				t.Errorf("%s made\n%s\nwant\n%s", tc.Action, g, w)
			}
		})
	}
	for _, a := range actionNames {
		if !tested[a] {
			t.Errorf("action %s has no test in action_test.yaml", a)
		}
	}
}

const (
	healthKey  = "resource.customizations.health.herokunix.dev_HerokuNixApp"
	actionsKey = "resource.customizations.actions.herokunix.dev_HerokuNixApp"
)

// actionsConfig is the value of actionsKey: the scripts under actions/ in
// the shape argocd-cm takes them.
func actionsConfig(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("discovery.lua: |\n")
	b.WriteString(indent(string(readFile(t, "actions", "discovery.lua")), "  "))
	b.WriteString("definitions:\n")
	for _, a := range actionNames {
		b.WriteString("- name: " + a + "\n  action.lua: |\n")
		b.WriteString(indent(string(readFile(t, "actions", a, "action.lua")), "    "))
	}
	return b.String()
}

func indent(s, prefix string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if strings.TrimSpace(line) != "" {
			b.WriteString(prefix)
		}
		b.WriteString(line)
	}
	return b.String()
}

const patchHeader = `# Adds herokunix's health check and resource actions (reconcile, suspend,
# resume) to Argo CD (installed in namespace argocd):
#   kubectl -n argocd patch configmap argocd-cm --patch-file config/argocd/argocd-cm-patch.yaml
# or list it under ` + "`patches:`" + ` of the kustomization that installs Argo CD.
# Generated from resource_customizations/herokunix.dev/HerokuNixApp/ by
#   go test ./config/argocd/ -run TestArgoCDConfigMapPatchIsGenerated -update
# (a test checks it is current).
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
data:
`

// renderPatch is argocd-cm-patch.yaml as generated from the scripts.
func renderPatch(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString(patchHeader)
	b.WriteString("  " + healthKey + ": |\n")
	b.WriteString(indent(readScript(t), "    "))
	b.WriteString("  " + actionsKey + ": |\n")
	b.WriteString(indent(actionsConfig(t), "    "))
	return b.Bytes()
}

func TestArgoCDConfigMapPatchIsGenerated(t *testing.T) {
	want := renderPatch(t)
	if *update {
		if err := os.WriteFile("argocd-cm-patch.yaml", want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("argocd-cm-patch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("argocd-cm-patch.yaml is stale: run go test ./config/argocd/ -run TestArgoCDConfigMapPatchIsGenerated -update")
	}
}
