package argocd_test

import (
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// The ready-to-apply argocd-cm patch carries health.lua and the actions
// unchanged, under the keys Argo CD looks up for group herokunix.dev, kind
// HerokuNixApp.
func TestArgoCDConfigMapPatchCarriesHealthLua(t *testing.T) {
	b, err := os.ReadFile("argocd-cm-patch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(b, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Kind != "ConfigMap" || cm.Name != "argocd-cm" {
		t.Errorf("patch targets %s %s, want ConfigMap argocd-cm", cm.Kind, cm.Name)
	}
	if len(cm.Data) != 2 {
		t.Errorf("patch sets %d keys, want only %s and %s", len(cm.Data), healthKey, actionsKey)
	}
	got, ok := cm.Data[healthKey]
	if !ok {
		t.Fatalf("patch has no %s", healthKey)
	}
	if want := readScript(t); got != want {
		t.Errorf("the Lua in argocd-cm-patch.yaml differs from health.lua; regenerate the patch")
	}
	// The actions value is what Argo CD reads: discovery.lua and one
	// action.lua per definition, each the file unchanged.
	var actions struct {
		Discovery   string `json:"discovery.lua"`
		Definitions []struct {
			Name   string `json:"name"`
			Action string `json:"action.lua"`
		} `json:"definitions"`
	}
	if err := yaml.UnmarshalStrict([]byte(cm.Data[actionsKey]), &actions); err != nil {
		t.Fatalf("%s: %v", actionsKey, err)
	}
	if actions.Discovery != string(readFile(t, "actions", "discovery.lua")) {
		t.Error("the discovery Lua in argocd-cm-patch.yaml differs from actions/discovery.lua")
	}
	if len(actions.Definitions) != len(actionNames) {
		t.Fatalf("%d action definitions, want %v", len(actions.Definitions), actionNames)
	}
	for i, d := range actions.Definitions {
		if d.Name != actionNames[i] || d.Action != string(readFile(t, "actions", d.Name, "action.lua")) {
			t.Errorf("action definition %d (%s) is not actions/%s/action.lua", i, d.Name, actionNames[i])
		}
	}
}

// The patch also works as a kustomize patch over an Argo CD install.
func TestArgoCDConfigMapPatchAppliesWithKustomize(t *testing.T) {
	fs := filesys.MakeFsInMemory()
	b, err := os.ReadFile("argocd-cm-patch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"/argocd/argocd-cm.yaml":       "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  namespace: argocd\ndata:\n  url: https://argocd.example.com\n",
		"/argocd/argocd-cm-patch.yaml": string(b),
		"/argocd/kustomization.yaml":   "resources: [argocd-cm.yaml]\npatches:\n- path: argocd-cm-patch.yaml\n",
	}
	for name, content := range files {
		if err := fs.WriteFile(name, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, "/argocd")
	if err != nil {
		t.Fatal(err)
	}
	if m.Size() != 1 {
		t.Fatalf("got %d objects, want 1", m.Size())
	}
	data := m.Resources()[0].GetDataMap()
	if data["url"] != "https://argocd.example.com" {
		t.Errorf("the patch dropped argocd-cm's other keys: %v", data)
	}
	if data[healthKey] != readScript(t) || data[actionsKey] != actionsConfig(t) {
		t.Error("the patched argocd-cm does not carry health.lua and the actions")
	}
}
