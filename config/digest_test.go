package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

// digestPinExample is the kustomization docs/install.md shows for pinning
// the manager's image by digest.
func digestPinExample(t *testing.T) kusttypes.Kustomization {
	t.Helper()
	for _, block := range fencedBlocks(t, "../docs/install.md", "yaml") {
		var k kusttypes.Kustomization
		if err := yaml.UnmarshalStrict([]byte(block), &k); err != nil || k.Kind != "Kustomization" {
			continue
		}
		for _, img := range k.Images {
			if img.Name == managerImage && img.Digest != "" {
				return k
			}
		}
	}
	t.Fatal("docs/install.md shows no kustomization pinning " + managerImage + " by digest")
	return kusttypes.Kustomization{}
}

// TestDefaultAcceptsADigestPin: the overlay docs/install.md shows, over
// this checkout's config/default, runs the manager by digest, not by tag.
func TestDefaultAcceptsADigestPin(t *testing.T) {
	k := digestPinExample(t)
	base, err := filepath.Abs("default")
	if err != nil {
		t.Fatal(err)
	}
	overlay := t.TempDir()
	// kustomize takes a base only by a relative path.
	rel, err := filepath.Rel(overlay, base)
	if err != nil {
		t.Fatal(err)
	}
	k.Resources = []string{rel}
	out, err := yaml.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), out, 0o600); err != nil {
		t.Fatal(err)
	}
	r := render(t, overlay)
	d := find[*appsv1.Deployment](t, r, "herokunix-controller-manager")
	want := managerImage + "@" + k.Images[0].Digest
	if !strings.HasPrefix(k.Images[0].Digest, "sha256:") {
		t.Errorf("the documented digest %q is not a sha256 digest", k.Images[0].Digest)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Image != want {
			t.Errorf("container %s runs %q, want %q", c.Name, c.Image, want)
		}
	}
}
