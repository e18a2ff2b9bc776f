package config_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/config/internal/apisource"
)

// docFiles are the Markdown files whose examples must hold: README.md and
// every docs/ page.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../docs/*.md")
	if err != nil || len(files) == 0 {
		t.Fatalf("no docs/*.md: %v", err)
	}
	return append(files, "../README.md", "argocd/README.md")
}

// fencedBlocks returns the bodies of the ```lang blocks of a Markdown file.
func fencedBlocks(t *testing.T, file, lang string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var cur *strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && trimmed == "```"+lang:
			cur = &strings.Builder{}
		case cur != nil && trimmed == "```":
			out = append(out, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	if cur != nil {
		t.Errorf("%s: a ```%s block is not closed", file, lang)
	}
	return out
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// TestDocYAMLExamplesAreValid decodes every YAML example of the docs
// strictly: HerokuNixApps into the API type, built-in kinds through the
// scheme. A renamed or misspelt field fails here.
func TestDocYAMLExamplesAreValid(t *testing.T) {
	scheme := newScheme(t)
	strict := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{Yaml: true, Strict: true})
	apps := 0
	for _, file := range docFiles(t) {
		for _, block := range fencedBlocks(t, file, "yaml") {
			for _, doc := range docSeparator.Split(block, -1) {
				if strings.TrimSpace(doc) == "" {
					continue
				}
				var head struct {
					APIVersion string `json:"apiVersion"`
					Kind       string `json:"kind"`
				}
				if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
					t.Errorf("%s: YAML example does not parse: %v\n%s", file, err, doc)
					continue
				}
				switch {
				case head.Kind == "HerokuNixApp":
					apps++
					var app herokunixv1.HerokuNixApp
					if err := yaml.UnmarshalStrict([]byte(doc), &app); err != nil {
						t.Errorf("%s: HerokuNixApp example: %v\n%s", file, err, doc)
						continue
					}
					if head.APIVersion != herokunixv1.GroupVersion.String() {
						t.Errorf("%s: HerokuNixApp example has apiVersion %q", file, head.APIVersion)
					}
					built := app.Spec.Flake != "" && len(app.Spec.Processes) > 0
					promoted := app.Spec.PromoteFrom != nil && app.Spec.PromoteFrom.Name != "" && app.Spec.Flake == ""
					if app.Name == "" || app.Spec.AppName == "" || built == promoted || app.Spec.CredentialsSecretRef.Name == "" {
						t.Errorf("%s: HerokuNixApp example %q lacks a required field", file, app.Name)
					}
				case head.APIVersion == "argoproj.io/v1alpha1" && head.Kind == "Application":
					// Argo CD's type is not vendored; parsing is what can be checked.
				case head.APIVersion == "kustomize.toolkit.fluxcd.io/v1" && head.Kind == "Kustomization":
					// Flux's type is not vendored: the fields the docs use are.
					if err := yaml.UnmarshalStrict([]byte(doc), &fluxKustomization{}); err != nil {
						t.Errorf("%s: Flux Kustomization example: %v", file, err)
					}
				case head.APIVersion == "kustomize.config.k8s.io/v1beta1" && head.Kind == "Kustomization":
					if err := yaml.UnmarshalStrict([]byte(doc), &kusttypes.Kustomization{}); err != nil {
						t.Errorf("%s: kustomization example: %v", file, err)
					}
				case head.Kind != "":
					if _, _, err := strict.Decode([]byte(doc), nil, nil); err != nil {
						t.Errorf("%s: %s example: %v", file, head.Kind, err)
					}
				default:
					t.Errorf("%s: YAML example without a kind:\n%s", file, doc)
				}
			}
		}
	}
	if apps < 3 {
		t.Errorf("found %d HerokuNixApp examples in the docs, want at least 3 (README, install, flakes)", apps)
	}
}

// fluxKustomization is the part of Flux's Kustomization (v1) the docs use.
type fluxKustomization struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Interval        string `json:"interval"`
		Path            string `json:"path"`
		Prune           bool   `json:"prune"`
		TargetNamespace string `json:"targetNamespace,omitempty"`
		Timeout         string `json:"timeout,omitempty"`
		Wait            bool   `json:"wait,omitempty"`
		SourceRef       struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"sourceRef"`
		HealthCheckExprs []struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			InProgress string `json:"inProgress,omitempty"`
			Failed     string `json:"failed,omitempty"`
			Current    string `json:"current"`
		} `json:"healthCheckExprs,omitempty"`
	} `json:"spec"`
}

// TestDocFlakeExamplesAreMarkedUntested: Nix examples that need nixpkgs
// cannot be built here; their page must say so and link the fixtures.
func TestDocFlakeExamplesAreMarkedUntested(t *testing.T) {
	for _, file := range docFiles(t) {
		if len(fencedBlocks(t, file, "nix")) == 0 {
			continue
		}
		data, _ := os.ReadFile(file)
		if !bytes.Contains(data, []byte("Not built by the tests")) || !bytes.Contains(data, []byte("test/fixtures")) {
			t.Errorf("%s has Nix examples but does not mark them untested and link test/fixtures", file)
		}
	}
}

// TestTroubleshootingCoversEveryReason: one section per condition reason.
func TestTroubleshootingCoversEveryReason(t *testing.T) {
	data, err := os.ReadFile("../docs/troubleshooting.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range conditionReasons(t) {
		if !regexp.MustCompile(`(?m)^## ` + r + `\s*$`).Match(data) {
			t.Errorf("docs/troubleshooting.md has no section \"## %s\"", r)
		}
	}
}

var (
	mdLink   = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	repoPath = regexp.MustCompile("(?:^|[\\s`(])((?:config|docs|test|api|controllers|internal|cmd|hack)/[A-Za-z0-9_./-]*[A-Za-z0-9_/])")
)

// TestDocLinksAndPathsExist: every relative link and every repository path
// the docs name exists.
func TestDocLinksAndPathsExist(t *testing.T) {
	for _, file := range docFiles(t) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Dir(file)
		if filepath.Base(file) == "README-sections.md" {
			base = ".." // pasted into README.md at the root
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(data), -1) {
			target, _, _ := strings.Cut(m[1], "#")
			if target == "" || strings.Contains(target, "://") {
				continue
			}
			if _, err := os.Stat(filepath.Join(base, target)); err != nil {
				t.Errorf("%s links to %s, which does not exist", file, m[1])
			}
		}
		for _, m := range repoPath.FindAllStringSubmatch(string(data), -1) {
			if _, err := os.Stat(filepath.Join("..", m[1])); err != nil {
				t.Errorf("%s names %s, which does not exist", file, m[1])
			}
		}
	}
}

// conditionReasons reads every Reason* constant of api/v1alpha1/conditions.go.
func conditionReasons(t *testing.T) []string {
	t.Helper()
	out, err := apisource.Reasons("../api/v1alpha1/conditions.go")
	if err != nil {
		t.Fatal(err)
	}
	return out
}
