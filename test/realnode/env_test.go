package realnode

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/hack/cluster/state"
	"github.com/herokunix/herokunix/test/fixtures"
	"github.com/herokunix/herokunix/test/herokustub"
)

// Names the suite shares with hack/cluster.
const (
	managerNamespace = "herokunix-system"
	managerName      = "herokunix-controller-manager"
	nixImage         = "herokunix.local/nix:2.8"
)

// env is what runInside set up for every test.
var env struct {
	state     *state.State
	c         client.Client
	cs        *kubernetes.Clientset
	stub      *herokustub.Server
	key       string
	apiURL    string
	registry  string // host:port of the registry stand-in
	flakes    string // base URL of the fixture flakes, as tarballs
	flakesDir string
}

// suiteStart is when this run began: a kept cluster's audit log also
// holds earlier runs' requests.
var suiteStart time.Time

func runInside(m *testing.M) int {
	suiteStart = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tmp, err := os.MkdirTemp("", "realnode-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "realnode:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	if err := setUp(ctx, tmp); err != nil {
		fmt.Fprintln(os.Stderr, "realnode: setting up:", err)
		return 1
	}
	return m.Run()
}

func setUp(ctx context.Context, tmp string) error {
	st, err := state.Read(state.Dir())
	if err != nil {
		return err
	}
	env.state = st
	cfg, err := clientcmd.BuildConfigFromFlags("", st.Kubeconfig)
	if err != nil {
		return fmt.Errorf("reading the kubeconfig: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := herokunixv1.AddToScheme(scheme); err != nil {
		return err
	}
	if env.c, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	if env.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}

	// The stand-ins listen on the node's address, inside the cluster's
	// network namespace: pods reach them the way they would reach Heroku.
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	env.key = "HRKU-realnode-" + hex.EncodeToString(b)
	env.stub = herokustub.New(herokustub.Options{APIKey: env.key})
	serve := func(h http.Handler) (string, error) {
		l, err := net.Listen("tcp", net.JoinHostPort(st.NodeIP, "0"))
		if err != nil {
			return "", fmt.Errorf("listening on the node's address: %w", err)
		}
		go http.Serve(l, h) //nolint:errcheck // ends with the process
		return l.Addr().String(), nil
	}
	api, err := serve(env.stub.APIHandler())
	if err != nil {
		return err
	}
	env.apiURL = "http://" + api
	if env.registry, err = serve(env.stub.RegistryHandler()); err != nil {
		return err
	}
	env.flakesDir = filepath.Join(tmp, "flakes")
	if err := os.MkdirAll(env.flakesDir, 0o755); err != nil {
		return err
	}
	files, err := serve(http.FileServer(http.Dir(env.flakesDir)))
	if err != nil {
		return err
	}
	env.flakes = "http://" + files

	return install(ctx)
}

// install applies config/default as a user would (kubectl apply -k),
// with the flags a user of this cluster would set in an overlay: where
// Heroku and its registry are, and the Nix image at hand.
func install(ctx context.Context) error {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resmap, err := k.Run(filesys.MakeFsOnDisk(), "../../config/default")
	if err != nil {
		return fmt.Errorf("kustomize build config/default: %w", err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range resmap.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(y, &u.Object); err != nil {
			return err
		}
		if u.GetKind() == "Deployment" && u.GetName() == managerName {
			if err := setManagerArgs(u); err != nil {
				return err
			}
		}
		objs = append(objs, u)
	}
	// Namespaces and CRDs before what lives in them, as kubectl does.
	first := func(u *unstructured.Unstructured) bool {
		return u.GetKind() == "Namespace" || u.GetKind() == "CustomResourceDefinition"
	}
	sort.SliceStable(objs, func(i, j int) bool { return first(objs[i]) && !first(objs[j]) })
	for _, u := range objs {
		if err := applyObject(ctx, u); err != nil {
			return err
		}
	}
	// The image was imported again under the same tag: start afresh.
	if err := env.c.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(managerNamespace),
		client.MatchingLabels{"app.kubernetes.io/component": "controller"}); err != nil {
		return fmt.Errorf("restarting the manager: %w", err)
	}
	return waitFor(ctx, "the manager Deployment to be available", 3*time.Minute, func() error {
		d := &appsv1.Deployment{}
		if err := env.c.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: managerName}, d); err != nil {
			return err
		}
		if d.Status.ObservedGeneration != d.Generation || d.Status.UpdatedReplicas != 1 || d.Status.AvailableReplicas != 1 ||
			d.Status.Replicas != 1 {
			return fmt.Errorf("deployment status %+v", d.Status)
		}
		return nil
	})
}

func setManagerArgs(u *unstructured.Unstructured) error {
	cs, _, err := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	if err != nil || len(cs) != 1 {
		return fmt.Errorf("the manager Deployment has no single container: %v", err)
	}
	c := cs[0].(map[string]any)
	args, _ := c["args"].([]any)
	for _, a := range []string{
		"--heroku-api-url=" + env.apiURL,
		"--heroku-registry=" + env.registry,
		"--insecure-registry",
		"--nix-image=" + nixImage,
	} {
		args = append(args, a)
	}
	c["args"] = args
	return unstructured.SetNestedSlice(u.Object, cs, "spec", "template", "spec", "containers")
}

// applyObject creates u or replaces what is there (a cluster left up by an
// earlier run).
func applyObject(ctx context.Context, u *unstructured.Unstructured) error {
	return waitFor(ctx, "applying "+u.GetKind()+" "+u.GetName(), time.Minute, func() error {
		err := env.c.Create(ctx, u.DeepCopy())
		if !apierrors.IsAlreadyExists(err) {
			return err
		}
		cur := &unstructured.Unstructured{}
		cur.SetGroupVersionKind(u.GroupVersionKind())
		if err := env.c.Get(ctx, client.ObjectKeyFromObject(u), cur); err != nil {
			return err
		}
		up := u.DeepCopy()
		up.SetResourceVersion(cur.GetResourceVersion())
		return env.c.Update(ctx, up)
	})
}

// serveFlake prepares fixture as a tarball flake the build pods fetch
// from the node: http://NODE/<name>.tar.gz.
func serveFlake(t *testing.T, fixture string) string {
	t.Helper()
	dir := t.TempDir()
	ref, err := fixtures.PrepareIn(dir, fixture)
	if err != nil {
		t.Fatal(err)
	}
	return serveDir(t, fixture, strings.TrimPrefix(ref, "path:"))
}

// serveDir serves the flake in src as http://NODE/<name>-<n>.tar.gz.
func serveDir(t *testing.T, name, src string) string {
	t.Helper()
	file := fmt.Sprintf("%s-%d.tar.gz", name, time.Now().UnixNano())
	f, err := os.Create(filepath.Join(env.flakesDir, file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(filepath.Join("source", rel))
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			r, err := os.Open(p)
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.Copy(tw, r)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = gz.Close()
	}
	if err != nil {
		t.Fatalf("packing %s: %v", src, err)
	}
	return env.flakes + "/" + file
}

func waitFor(ctx context.Context, what string, timeout time.Duration, ok func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ok()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", what, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func resourceMust(q string) resource.Quantity { return resource.MustParse(q) }
