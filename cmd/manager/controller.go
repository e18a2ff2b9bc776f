package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/controllers"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/internal/heroku"
	"github.com/herokunix/herokunix/internal/metrics"
	"github.com/herokunix/herokunix/internal/nixbuild"
)

// Version is stamped at build time (-ldflags -X main.Version=…).
var Version = "dev"

type controllerFlags struct {
	metricsAddr, probeAddr string
	metricsSecure          bool
	leaderElect            bool
	builder                string
	concurrency            int
	herokuAPIURL           string
	registryHost           string
	insecureRegistry       bool
	requestsPerHour        int
	toolsImage, nixImage   string
	workDir                string
	nixOffline             bool
}

func runController(args []string) error {
	var f controllerFlags
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8443", "metrics endpoint address (0 disables)")
	fs.BoolVar(&f.metricsSecure, "metrics-secure", true, "serve metrics over HTTPS to callers the API server authenticates and authorizes (get on the non-resource URL /metrics); false serves plain HTTP to anyone, for local use only")
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "health and readiness probe address")
	fs.BoolVar(&f.leaderElect, "leader-elect", false, "elect a leader, so only one replica reconciles")
	fs.StringVar(&f.builder, "builder", "job", "where builds run: job (a Kubernetes Job) or local (this process, needs Nix; flake builds then run with this process's privileges, so use it only for trusted flakes)")
	fs.IntVar(&f.concurrency, "concurrency", 4, "resources reconciled at once")
	fs.StringVar(&f.herokuAPIURL, "heroku-api-url", "https://api.heroku.com", "Heroku Platform API")
	fs.StringVar(&f.registryHost, "heroku-registry", "registry.heroku.com", "Heroku container registry host")
	fs.BoolVar(&f.insecureRegistry, "insecure-registry", false, "plain HTTP to the registry (local testing only)")
	fs.IntVar(&f.requestsPerHour, "heroku-requests-per-hour", 2250, "this controller's share of each account's 4,500 Heroku API calls an hour")
	fs.StringVar(&f.toolsImage, "tools-image", "ghcr.io/herokunix/herokunix:"+Version, "image of this binary, run by build Jobs")
	fs.StringVar(&f.nixImage, "nix-image", "nixos/nix:2.24.9", "default Nix image of build Jobs")
	fs.StringVar(&f.workDir, "work-dir", os.TempDir(), "workspaces of the local builder")
	fs.BoolVar(&f.nixOffline, "nix-offline", false, "local builder: use no binary cache")
	rf := bindReceiverFlags(fs)
	zapOpts := zap.Options{Development: false, TimeEncoder: zapcore.ISO8601TimeEncoder}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

	ctx := ctrl.SetupSignalHandler()
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	mgr, err := newManager(ctx, cfg, f)
	if err != nil {
		return err
	}
	if err := addReceiver(mgr, rf); err != nil {
		return err
	}
	if f.builder == "local" {
		log.Info("WARNING: the local builder runs flake builds in this process, with its service account and its Heroku keys in reach; use it only for trusted flakes")
	}
	log.Info("starting manager", "version", Version, "builder", f.builder)
	return mgr.Start(ctx)
}

// metricsOptions serve metrics, unless --metrics-secure=false, over HTTPS
// (a self-signed certificate made at start) to callers whose bearer token
// the API server accepts (TokenReview) and who may get /metrics
// (SubjectAccessReview): metrics name resources and Heroku apps.
func metricsOptions(f controllerFlags) metricsserver.Options {
	o := metricsserver.Options{BindAddress: f.metricsAddr}
	if f.metricsSecure {
		o.SecureServing = true
		o.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return o
}

func newManager(ctx context.Context, cfg *rest.Config, f controllerFlags) (ctrl.Manager, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := herokunixv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         controllers.CacheOptions(),
		Metrics:                       metricsOptions(f),
		HealthProbeBindAddress:        f.probeAddr,
		LeaderElection:                f.leaderElect,
		LeaderElectionID:              "herokunix.dev",
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       ptr.To(30 * time.Second),
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}

	var builder build.Builder
	var buildEvents chan event.TypedGenericEvent[*herokunixv1.HerokuNixApp]
	switch f.builder {
	case "job":
		builder = build.NewJobBuilder(mgr, build.JobImages{Tools: f.toolsImage, Nix: f.nixImage, RegistryHost: f.registryHost,
			InsecureRegistry: f.insecureRegistry})
	case "local":
		buildEvents = make(chan event.TypedGenericEvent[*herokunixv1.HerokuNixApp], 64)
		builder = &build.LocalBuilder{
			Nix:              nixbuild.Nix{Offline: f.nixOffline},
			RegistryHost:     f.registryHost,
			InsecureRegistry: f.insecureRegistry,
			WorkDir:          f.workDir,
			Events:           buildEvents,
		}
	default:
		return nil, fmt.Errorf("--builder must be job or local, not %q", f.builder)
	}

	r, err := controllers.NewReconciler(mgr, controllers.ReconcilerConfig{
		Builder:          builder,
		RegistryHost:     f.registryHost,
		InsecureRegistry: f.insecureRegistry,
		NewHeroku: func(key string) (controllers.HerokuAPI, error) {
			return heroku.New(heroku.Options{
				APIKey: key, BaseURL: f.herokuAPIURL, RegistryHost: f.registryHost,
				RequestsPerHour: f.requestsPerHour, UserAgent: "herokunix/" + Version,
				HTTPClient: &http.Client{Timeout: 30 * time.Second},
				Observer:   metrics.HerokuObserver{},
			})
		},
	})
	if err != nil {
		return nil, fmt.Errorf("making the reconciler: %w", err)
	}
	if err := r.SetupWithManager(ctx, mgr, controllers.Options{MaxConcurrentReconciles: f.concurrency, BuildEvents: buildEvents}); err != nil {
		return nil, fmt.Errorf("setting up controller: %w", err)
	}
	return mgr, nil
}
