// Command bench-receiver measures how fast a push reaches a build: N
// HerokuNixApps (default 200), each following the main branch of its own
// repository and deployed to its own Heroku app, run against a real
// kube-apiserver and the Heroku stand-in. Once all are deployed, it sends
// signed GitHub push events to the receiver (served as the manager serves
// it, over the manager's cached client) and reports the time from sending
// an event to the new build Job appearing, one event at a time and for a
// burst of events at once.
//
//	go run ./hack/bench-receiver [-n 200] [-events 20] [-burst 50]
//
// Every event is for a resource of its own (events + burst <= n).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
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
	"k8s.io/apimachinery/pkg/watch"
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
	"github.com/herokunix/herokunix/internal/receiver"
	"github.com/herokunix/herokunix/test/herokustub"
	"github.com/herokunix/herokunix/test/kubelet"
)

func main() {
	n := flag.Int("n", 200, "number of HerokuNixApps")
	events := flag.Int("events", 20, "push events sent one at a time")
	burst := flag.Int("burst", 50, "push events sent at once, each for another resource")
	concurrency := flag.Int("concurrency", 4, "reconciles at once")
	flag.Parse()
	if *events+*burst > *n {
		fmt.Fprintln(os.Stderr, "bench-receiver: -events plus -burst must not exceed -n (each event is for a resource of its own)")
		os.Exit(2)
	}
	if err := run(*n, *events, *burst, *concurrency); err != nil {
		fmt.Fprintln(os.Stderr, "bench-receiver:", err)
		os.Exit(1)
	}
}

const ns = "default"

func appName(i int) string { return fmt.Sprintf("app-%04d", i) }
func repo(i int) string    { return fmt.Sprintf("acme/shop-%04d", i) }

func run(n, events, burst, concurrency int) error {
	log.SetLogger(logr.Discard())
	env, err := localenv.NewControlPlane(".") // run from the repo root
	if err != nil {
		return err
	}
	cfg, err := env.Start()
	if err != nil {
		return err
	}
	defer env.Stop()
	cfg.QPS, cfg.Burst = 500, 1000

	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = herokunixv1.AddToScheme(scheme)
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
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
	hookKey := []byte("bench-webhook-key")
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "heroku", Namespace: ns}, StringData: map[string]string{"apiKey": key}},
		{ObjectMeta: metav1.ObjectMeta{Name: "herokunix-webhooks", Namespace: ns}, Data: map[string][]byte{receiver.SecretKeyGitHub: hookKey}},
	} {
		if err := c.Create(ctx, s); err != nil {
			return err
		}
	}

	// Every build a Job starts completes with one pushed image: the bench
	// is about the path from event to build, not the build.
	img, err := dockerImage()
	if err != nil {
		return err
	}
	results := make([]*artifact.Result, n)
	for i := range n {
		stub.CreateApp(fmt.Sprintf("bench-%04d", i), "container")
		imgs, err := image.Push(ctx, map[string]v1.Image{"web": img}, registryHost, fmt.Sprintf("bench-%04d", i), remote.WithAuth(heroku.RegistryAuth(key)))
		if err != nil {
			return err
		}
		results[i] = &artifact.Result{Revision: strings.Repeat("a", 40), LockedFlake: "github:" + repo(i) + "/" + strings.Repeat("a", 40), Images: imgs}
	}

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Cache: controllers.CacheOptions(), Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		return err
	}
	r, err := controllers.NewReconciler(mgr, controllers.ReconcilerConfig{
		Builder: build.NewJobBuilder(mgr, build.JobImages{Tools: "t", Nix: "n", RegistryHost: registryHost}),
		NewHeroku: func(k string) (controllers.HerokuAPI, error) {
			// All apps share one stand-in account; its hourly budget would
			// pace the bench, which measures the path from event to build.
			return heroku.New(heroku.Options{APIKey: k, BaseURL: api.URL, RegistryHost: registryHost, RequestsPerHour: 1 << 30})
		},
	})
	if err != nil {
		return err
	}
	if err := r.SetupWithManager(ctx, mgr, controllers.Options{MaxConcurrentReconciles: concurrency}); err != nil {
		return err
	}
	// The receiver as the manager runs it: the manager's cached client,
	// the Secret read through the API reader.
	hook := httptest.NewServer(receiver.New(receiver.Options{
		Client:  mgr.GetClient(),
		Secrets: &receiver.SecretSource{Reader: mgr.GetAPIReader(), Name: client.ObjectKey{Namespace: ns, Name: "herokunix-webhooks"}},
		Limits:  receiver.Limits{PerSource: 1000, PerSourceBurst: 1000, Global: 1000, GlobalBurst: 1000},
		Log:     logr.Discard(),
	}))
	defer hook.Close()
	go func() { _ = mgr.Start(ctx) }()
	go playKubelet(ctx, c, results)

	for i := range n {
		app := &herokunixv1.HerokuNixApp{
			ObjectMeta: metav1.ObjectMeta{Name: appName(i), Namespace: ns},
			Spec: herokunixv1.HerokuNixAppSpec{
				AppName: fmt.Sprintf("bench-%04d", i), Flake: "github:" + repo(i) + "?ref=main",
				Processes:            map[string]herokunixv1.Process{"web": {Attribute: "packages.x86_64-linux.web", Quantity: ptr.To[int32](1)}},
				CredentialsSecretRef: herokunixv1.SecretKeyRef{Name: "heroku", Key: "apiKey"},
			},
		}
		if err := c.Create(ctx, app); err != nil {
			return err
		}
	}
	deployStart := time.Now()
	if err := waitReady(ctx, c, n); err != nil {
		return err
	}
	fmt.Printf("apps: %d, concurrency: %d; all deployed in %s\n", n, concurrency, time.Since(deployStart).Round(time.Millisecond))

	// Job creations, seen through a watch as they happen.
	created, err := watchJobs(ctx, c)
	if err != nil {
		return err
	}
	send := func(i int, delivery string) error {
		body, _ := json.Marshal(map[string]any{
			"ref": "refs/heads/main", "after": strings.Repeat("b", 40),
			"repository": map[string]any{"full_name": repo(i), "html_url": "https://github.com/" + repo(i), "default_branch": "main"},
		})
		req, _ := http.NewRequest(http.MethodPost, hook.URL+"/hooks/github", bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", delivery)
		req.Header.Set("X-Hub-Signature-256", receiver.Sign(hookKey, body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("push for %s answered %d", repo(i), resp.StatusCode)
		}
		return nil
	}

	// Each event is for a resource no other event touched: a push that
	// arrives while that resource's previous refresh is still running is
	// absorbed by it (see docs/webhooks.md), which would measure that
	// build, not the path from event to build. Resources are spread over
	// the list.
	pick := func(k int) int { return (k * 7919) % n } // 7919 is prime: distinct for k < n unless n is a multiple
	if n%7919 == 0 {
		pick = func(k int) int { return k }
	}
	// One event at a time.
	var single []time.Duration
	for k := range events {
		i := pick(k)
		start := time.Now()
		if err := send(i, fmt.Sprintf("single-%d", k)); err != nil {
			return err
		}
		at, err := created.next(ctx, appName(i), start)
		if err != nil {
			return err
		}
		single = append(single, at.Sub(start))
	}
	// A burst: events for many resources at once.
	burstStart := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, burst)
	for k := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := send(pick(events+k), fmt.Sprintf("burst-%d", k)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	var burstLat []time.Duration
	for k := range burst {
		at, err := created.next(ctx, appName(pick(events+k)), burstStart)
		if err != nil {
			return err
		}
		burstLat = append(burstLat, at.Sub(burstStart))
	}

	fmt.Printf("push event -> build Job created, one event at a time (%d events): %s\n", len(single), summary(single))
	fmt.Printf("push event -> build Job created, %d events at once: %s\n", burst, summary(burstLat))
	return nil
}

func summary(ds []time.Duration) string {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	q := func(p float64) time.Duration {
		return ds[min(len(ds)-1, int(p*float64(len(ds))))].Round(100 * time.Microsecond)
	}
	return fmt.Sprintf("p50 %s, p90 %s, max %s", q(0.5), q(0.9), ds[len(ds)-1].Round(100*time.Microsecond))
}

// jobCreations records when each resource's build Jobs were first seen.
type jobCreations struct {
	mu   sync.Mutex
	seen map[string][]time.Time // resource -> creation sightings
	cond *sync.Cond
}

func watchJobs(ctx context.Context, c client.WithWatch) (*jobCreations, error) {
	var list batchv1.JobList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	w, err := c.Watch(ctx, &batchv1.JobList{}, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	if err != nil {
		return nil, err
	}
	j := &jobCreations{seen: map[string][]time.Time{}}
	j.cond = sync.NewCond(&j.mu)
	go func() {
		for ev := range w.ResultChan() {
			if ev.Type != watch.Added {
				continue
			}
			job, ok := ev.Object.(*batchv1.Job)
			if !ok {
				continue
			}
			now := time.Now()
			j.mu.Lock()
			app := job.Labels[build.LabelApp]
			j.seen[app] = append(j.seen[app], now)
			j.cond.Broadcast()
			j.mu.Unlock()
		}
	}()
	return j, nil
}

// next waits for a Job of app created after since.
func (j *jobCreations) next(ctx context.Context, app string, since time.Time) (time.Time, error) {
	deadline := time.Now().Add(2 * time.Minute)
	stop := context.AfterFunc(ctx, func() { j.mu.Lock(); j.cond.Broadcast(); j.mu.Unlock() })
	defer stop()
	timer := time.AfterFunc(time.Until(deadline), func() { j.mu.Lock(); j.cond.Broadcast(); j.mu.Unlock() })
	defer timer.Stop()
	j.mu.Lock()
	defer j.mu.Unlock()
	for {
		for _, at := range j.seen[app] {
			if at.After(since) {
				return at, nil
			}
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no build Job for %s within 2m of its push", app)
		}
		j.cond.Wait()
	}
}

// waitReady polls until n resources are Ready for their generation.
func waitReady(ctx context.Context, c client.Client, n int) error {
	deadline := time.Now().Add(20 * time.Minute)
	for time.Now().Before(deadline) {
		var list herokunixv1.HerokuNixAppList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		ready := 0
		for _, a := range list.Items {
			if meta.IsStatusConditionTrue(a.Status.Conditions, herokunixv1.ConditionReady) && a.Status.ObservedGeneration == a.Generation {
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
	for ctx.Err() == nil {
		var jobs batchv1.JobList
		if err := c.List(ctx, &jobs, client.InNamespace(ns)); err != nil {
			return
		}
		for i := range jobs.Items {
			job := &jobs.Items[i]
			if done[job.Name] {
				continue
			}
			done[job.Name] = true
			var idx int
			if _, err := fmt.Sscanf(job.Labels[build.LabelApp], "app-%04d", &idx); err != nil {
				continue
			}
			_ = kubelet.CompleteJob(ctx, c, job, results[idx])
		}
		time.Sleep(50 * time.Millisecond) // a player's poll, not test synchronisation
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
