package envtest

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/image"
	"github.com/herokunix/herokunix/test/fixtures"
	"github.com/herokunix/herokunix/test/fixtures/fixturestest"
)

// The next build's push reuses layers only from the images the resource's
// status pins, which the controller hands to the build Job.
func TestTheNextBuildJobIsHandedTheImagesOnStatus(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	app, first := h.deployed("shop")

	cur := h.get(app)
	cur.Spec.Processes["web"] = herokunixv1.Process{Attribute: "packages.x86_64-linux.web2", Quantity: ptr.To[int32](2), Size: "standard-1X"}
	h.g.Expect(k8sClient.Update(h.ctx, cur)).To(Succeed())
	job := h.buildJob(app)
	var push *corev1.Container
	for i, c := range job.Spec.Template.Spec.Containers {
		if c.Name == "push" {
			push = &job.Spec.Template.Spec.Containers[i]
		}
	}
	if push == nil {
		t.Fatal("the build Job has no push container")
	}
	i := slices.Index(push.Args, "--reuse-from")
	if i < 0 || i+1 == len(push.Args) {
		t.Fatalf("push args %q pin no image", push.Args)
	}
	if want := artifact.FormatReuseFrom(map[string]string{"web": first.Images["web"].Digest}); push.Args[i+1] != want {
		t.Errorf("--reuse-from %s, want the image on status %s", push.Args[i+1], want)
	}
}

// A forged image pushed straight to APP/web:latest (anyone with the key
// can) whose layer records map the app's store paths to a layer of the
// forger's is ignored by the next real build: its image is made of the
// layers herokunix pushed before.
func TestAForgedImageAtLatestIsIgnoredByTheNextBuild(t *testing.T) {
	fixturestest.RequireNix(t)
	h := newHarness(t, withLocalBuilder(t))
	h.createSecret()
	flake := fixturestest.Prepare(t, fixtures.Closure)
	app := h.newApp("shop", func(a *herokunixv1.HerokuNixApp) {
		a.Spec.Flake = flake
		a.Spec.Processes = map[string]herokunixv1.Process{
			"web": {Attribute: "packages.x86_64-linux.server", Command: []string{"bin/server"}},
		}
	})
	first := h.eventuallyConditionWithin(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased, buildTimeout).Status.Images["web"]
	auth := remote.WithAuth(&authn.Basic{Username: "_", Password: h.key})
	genuine := h.pullImage(first.Digest, auth)
	evil := h.forgeLatest(genuine, auth)

	// The next build makes the same layers (only the command changes).
	cur := h.get(app)
	cur.Spec.Processes["web"] = herokunixv1.Process{Attribute: "packages.x86_64-linux.server", Command: []string{"bin/server", "--forged-label-test"}}
	h.g.Expect(k8sClient.Update(h.ctx, cur)).To(Succeed())
	got := h.eventuallyConditionWithin(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased, buildTimeout)
	second := got.Status.Images["web"]
	if second.ImageID == first.ImageID {
		t.Fatal("the second build made the first image")
	}
	layers := layerDigests(t, h.pullImage(second.Digest, auth))
	if slices.Contains(layers, evil.String()) {
		t.Fatalf("the build shipped the forged layer %s", evil)
	}
	if want := layerDigests(t, genuine); !slices.Equal(layers, want) {
		t.Errorf("layers %q, want those herokunix pushed first %q", layers, want)
	}
}

func (h *harness) pullImage(digest string, opts ...remote.Option) v1.Image {
	h.t.Helper()
	ref, err := name.ParseReference(h.registryHost + "/" + testHerokuApp + "/web@" + digest)
	h.g.Expect(err).NotTo(HaveOccurred())
	img, err := remote.Image(ref, opts...)
	h.g.Expect(err).NotTo(HaveOccurred())
	return img
}

// forgeLatest pushes to APP/web:latest an image whose layer records name
// every key of genuine's records with a random layer, and returns its
// digest.
func (h *harness) forgeLatest(genuine v1.Image, opts ...remote.Option) v1.Hash {
	h.t.Helper()
	cf, err := genuine.ConfigFile()
	h.g.Expect(err).NotTo(HaveOccurred())
	var recs []map[string]any
	h.g.Expect(json.Unmarshal([]byte(cf.Config.Labels[image.LayersLabel]), &recs)).To(Succeed())
	h.g.Expect(recs).NotTo(BeEmpty(), "the genuine image records no layers")
	evil, err := random.Layer(512, types.DockerLayer)
	h.g.Expect(err).NotTo(HaveOccurred())
	d, err := evil.Digest()
	h.g.Expect(err).NotTo(HaveOccurred())
	diffID, err := evil.DiffID()
	h.g.Expect(err).NotTo(HaveOccurred())
	size, err := evil.Size()
	h.g.Expect(err).NotTo(HaveOccurred())
	img := mutate.MediaType(empty.Image, types.DockerManifestSchema2)
	img = mutate.ConfigMediaType(img, types.DockerConfigJSON)
	img, err = mutate.AppendLayers(img, evil)
	h.g.Expect(err).NotTo(HaveOccurred())
	for _, r := range recs {
		r["digest"], r["diffID"], r["size"] = d.String(), diffID.String(), size
	}
	label, err := json.Marshal(recs)
	h.g.Expect(err).NotTo(HaveOccurred())
	fcf, err := img.ConfigFile()
	h.g.Expect(err).NotTo(HaveOccurred())
	fcf = fcf.DeepCopy()
	fcf.OS, fcf.Architecture = "linux", "amd64"
	fcf.Config.Labels = map[string]string{image.LayersLabel: string(label)}
	img, err = mutate.ConfigFile(img, fcf)
	h.g.Expect(err).NotTo(HaveOccurred())
	ref, err := name.NewTag(h.registryHost + "/" + testHerokuApp + "/web:latest")
	h.g.Expect(err).NotTo(HaveOccurred())
	h.g.Expect(remote.Write(ref, img, opts...)).To(Succeed())
	return d
}

func layerDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var ds []string
	for _, l := range m.Layers {
		ds = append(ds, l.Digest.String())
	}
	return ds
}
