// Command bench-controller measures the reconciler at scale: N
// HerokuNixApps (default 500), each with its own Heroku app on one account,
// against a real kube-apiserver and the Heroku stand-in. It plays the
// kubelet (build Jobs complete with a real pushed image's result), and
// reports the time to all Ready, the controller process's peak heap, and
// Heroku calls per app for the first deploy and for one resync.
//
//	go run ./hack/bench-controller [-n 500]
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/controllers"
	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/internal/heroku"
	"github.com/herokunix/herokunix/internal/image"
	"github.com/herokunix/herokunix/internal/localenv"
	"github.com/herokunix/herokunix/test/herokustub"
	"github.com/herokunix/herokunix/test/kubelet"
)

func main() {
	n := flag.Int("n", 500, "number of HerokuNixApps")
	concurrency := flag.Int("concurrency", 4, "reconciles at once")
	flag.Parse()
	if err := run(*n, *concurrency); err != nil {
		fmt.Fprintln(os.Stderr, "bench-controller:", err)
		os.Exit(1)
	}
}

func run(n, concurrency int) error {
	log.SetLogger(logr.Discard())             // the bench measures, it does not narrate
	env, err := localenv.NewControlPlane(".") // run from the repo root
	if err != nil {
		return err
	}
	cfg, err := env.Start()
	if err != nil {
		return err
	}
	defer env.Stop()
	cfg.QPS, cfg.Burst = 500, 1000 // the bench measures the controller, not client-side throttling

	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = herokunixv1.AddToScheme(scheme)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}

	const key = "bench-key"
	stub := herokustub.New(herokustub.Options{APIKey: key})
	api := httptest.NewServer(stub.APIHandler())
	reg := httptest.NewServer(stub.RegistryHandler())
	defer func() { stub.Close(); api.Close(); reg.Close() }()
	registryHost := strings.TrimPrefix(reg.URL, "http://")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "heroku", Namespace: "default"}, StringData: map[string]string{"apiKey": key}}); err != nil {
		return err
	}

	// One image, pushed once per app repository before the clock starts:
	// the bench is about the controller, not the push.
	img, err := dockerImage()
	if err != nil {
		return err
	}
	results := make([]*artifact.Result, n)
	for i := range n {
		app := fmt.Sprintf("bench-%04d", i)
		stub.CreateApp(app, "container")
		imgs, err := image.Push(ctx, map[string]v1.Image{"web": img}, registryHost, app, remote.WithAuth(heroku.RegistryAuth(key)))
		if err != nil {
			return err
		}
		results[i] = &artifact.Result{Revision: strings.Repeat("a", 40), LockedFlake: "github:acme/shop/" + strings.Repeat("a", 40), Images: imgs}
	}
	stub.ResetCalls()

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Cache: controllers.CacheOptions(), Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		return err
	}
	r, err := controllers.NewReconciler(mgr, controllers.ReconcilerConfig{
		Builder: build.NewJobBuilder(mgr, build.JobImages{Tools: "t", Nix: "n", RegistryHost: registryHost}),
		NewHeroku: func(k string) (controllers.HerokuAPI, error) {
			return heroku.New(heroku.Options{APIKey: k, BaseURL: api.URL, RegistryHost: registryHost, RequestsPerHour: 4500})
		},
	})
	if err != nil {
		return err
	}
	if err := r.SetupWithManager(ctx, mgr, controllers.Options{MaxConcurrentReconciles: concurrency}); err != nil {
		return err
	}
	go func() { _ = mgr.Start(ctx) }()

	var peak atomic.Uint64
	stopSampling := sampleHeap(&peak)
	defer stopSampling()
	go playKubelet(ctx, c, results)

	start := time.Now()
	for i := range n {
		app := &herokunixv1.HerokuNixApp{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%04d", i), Namespace: "default"},
			Spec: herokunixv1.HerokuNixAppSpec{
				AppName: fmt.Sprintf("bench-%04d", i), Flake: "github:acme/shop/" + strings.Repeat("a", 40),
				Processes:            map[string]herokunixv1.Process{"web": {Attribute: "packages.x86_64-linux.web", Quantity: ptr.To[int32](1)}},
				CredentialsSecretRef: herokunixv1.SecretKeyRef{Name: "heroku", Key: "apiKey"},
			},
		}
		if err := c.Create(ctx, app); err != nil {
			return err
		}
	}
	if err := waitReady(ctx, c, n, nil); err != nil {
		return err
	}
	elapsed := time.Since(start)
	firstCalls := apiCalls(stub)

	// One resync of every resource, asked for with the reconcile-now annotation.
	stub.ResetCalls()
	resyncStart := time.Now()
	stamp := resyncStart.Format(time.RFC3339Nano)
	var list herokunixv1.HerokuNixAppList
	if err := c.List(ctx, &list, client.InNamespace("default")); err != nil {
		return err
	}
	for i := range list.Items {
		a := &list.Items[i]
		patch := client.MergeFrom(a.DeepCopy())
		a.Annotations = map[string]string{herokunixv1.ReconcileRequestAnnotation: stamp}
		if err := c.Patch(ctx, a, patch); err != nil {
			return err
		}
	}
	if err := waitReady(ctx, c, n, &stamp); err != nil {
		return err
	}
	resync := time.Since(resyncStart)
	resyncCalls := apiCalls(stub)

	fmt.Printf("apps: %d, concurrency: %d\n", n, concurrency)
	fmt.Printf("first deploy: all Ready in %s (%.1f apps/s)\n", elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	fmt.Printf("heroku API calls, first deploy: %d (%.2f per app; writes %d)\n", firstCalls.total, float64(firstCalls.total)/float64(n), firstCalls.writes)
	fmt.Printf("resync: all handled in %s\n", resync.Round(time.Millisecond))
	fmt.Printf("heroku API calls, one resync: %d (%.2f per app; writes %d)\n", resyncCalls.total, float64(resyncCalls.total)/float64(n), resyncCalls.writes)
	fmt.Printf("peak Go heap in use (controller, API client, stand-in and kubelet player share the process): %.1f MiB\n", float64(peak.Load())/(1<<20))
	return nil
}

type calls struct{ total, writes int }

func apiCalls(s *herokustub.Server) calls {
	var c calls
	for _, call := range s.Calls() {
		if call.Handler != "api" {
			continue
		}
		c.total++
		if call.IsWrite() {
			c.writes++
		}
	}
	return c
}

// waitReady polls until n resources are Ready for their generation (and,
// with stamp, have handled that reconcile request).
func waitReady(ctx context.Context, c client.Client, n int, stamp *string) error {
	deadline := time.Now().Add(15 * time.Minute)
	for time.Now().Before(deadline) {
		var list herokunixv1.HerokuNixAppList
		if err := c.List(ctx, &list); err != nil {
			return err
		}
		ready := 0
		for _, a := range list.Items {
			if meta.IsStatusConditionTrue(a.Status.Conditions, herokunixv1.ConditionReady) && a.Status.ObservedGeneration == a.Generation &&
				(stamp == nil || a.Status.LastHandledReconcileAt == *stamp) {
				ready++
			}
		}
		if ready == n {
			return nil
		}
		time.Sleep(100 * time.Millisecond) // a benchmark's progress poll, not test synchronisation
	}
	return fmt.Errorf("not all %d resources became Ready in time", n)
}

// playKubelet completes every build Job with its app's result, as the
// kubelet and the Job controller would.
func playKubelet(ctx context.Context, c client.Client, results []*artifact.Result) {
	done := map[string]bool{}
	var mu sync.Mutex
	for ctx.Err() == nil {
		var jobs batchv1.JobList
		if err := c.List(ctx, &jobs); err != nil {
			return
		}
		for i := range jobs.Items {
			job := &jobs.Items[i]
			mu.Lock()
			seen := done[job.Name]
			done[job.Name] = true
			mu.Unlock()
			if seen {
				continue
			}
			var idx int
			if _, err := fmt.Sscanf(job.Labels[build.LabelApp], "app-%04d", &idx); err != nil {
				continue
			}
			_ = kubelet.CompleteJob(ctx, c, job, results[idx])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func dockerImage() (v1.Image, error) {
	img, err := random.Image(1024, 1)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.DockerManifestSchema2), types.DockerConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf.OS, cf.Architecture = "linux", "amd64"
	return mutate.ConfigFile(img, cf)
}

// sampleHeap records the peak of the Go heap in use.
func sampleHeap(peak *atomic.Uint64) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		var ms goruntime.MemStats
		for {
			select {
			case <-done:
				return
			case <-t.C:
				goruntime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	return func() { close(done) }
}
