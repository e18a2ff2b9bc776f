package metrics_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/herokunix/herokunix/internal/heroku"
	"github.com/herokunix/herokunix/internal/metrics"
)

// startMetricsServer runs controller-runtime's metrics server, the one the
// manager runs, on a loopback port and returns its /metrics URL once it
// answers.
func startMetricsServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	srv, err := metricsserver.NewServer(metricsserver.Options{BindAddress: addr}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("metrics server: %v", err)
		}
	})
	url := "http://" + addr + "/metrics"
	NewWithT(t).Eventually(func() error {
		_, err := scrape(url)
		return err
	}, 10*time.Second, 20*time.Millisecond).Should(Succeed())
	return url
}

// sample is one series: a metric name and its labels, e.g.
// herokunix_builds_total{result="failed"}.
type sample struct {
	name   string
	labels string
}

// scrape GETs url and returns every counter, gauge and histogram
// count/sum as name{labels} -> value.
func scrape(url string) (map[sample]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	out := map[sample]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			labels := labelString(m.GetLabel())
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[sample{name, labels}] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[sample{name, labels}] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				out[sample{name + "_count", labels}] = float64(h.GetSampleCount())
				out[sample{name + "_sum", labels}] = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					out[sample{name + "_bucket", fmt.Sprintf(`le="%g"`, b.GetUpperBound())}] = float64(b.GetCumulativeCount())
				}
			}
		}
	}
	return out, nil
}

func labelString(ls []*dto.LabelPair) string {
	s := ""
	for i, l := range ls {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprintf("%s=%q", l.GetName(), l.GetValue())
	}
	return s
}

// TestMetricsAreServedOnTheManagerEndpoint calls every recording function
// and scrapes controller-runtime's metrics server for the change. Values
// are compared before and after, so the test holds with -count=N.
func TestMetricsAreServedOnTheManagerEndpoint(t *testing.T) {
	url := startMetricsServer(t)
	before, err := scrape(url)
	if err != nil {
		t.Fatal(err)
	}

	metrics.BuildFinished(metrics.ResultSucceeded, 90*time.Second)
	metrics.BuildFinished(metrics.ResultSucceeded, 200*time.Second)
	metrics.BuildFinished(metrics.ResultFailed, 5*time.Second)
	metrics.ReleaseFinished(metrics.ResultSucceeded)
	metrics.ReleaseFinished(metrics.ResultFailed)
	metrics.ReleaseFinished(metrics.ResultFailed)
	metrics.Pushed(1<<20, 3)
	metrics.Pushed(512, 0)
	var obs heroku.Observer = metrics.HerokuObserver{}
	obs.ObserveCall("release.list", 200)
	obs.ObserveCall("release.list", 200)
	obs.ObserveCall("formation.docker-release", 429)
	obs.ObserveCall("app.info", 0)
	obs.ObserveRateLimitRemaining(4321)
	metrics.WebhookEvent("github", "accepted", 3)
	metrics.WebhookEvent("github", "unauthorized", 0)

	after, err := scrape(url)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, labels string
		delta        float64
	}{
		{"herokunix_builds_total", `result="succeeded"`, 2},
		{"herokunix_builds_total", `result="failed"`, 1},
		{"herokunix_build_duration_seconds_count", ``, 3},
		{"herokunix_build_duration_seconds_sum", ``, 295},
		{"herokunix_build_duration_seconds_bucket", `le="10"`, 1},
		{"herokunix_build_duration_seconds_bucket", `le="120"`, 2},
		{"herokunix_build_duration_seconds_bucket", `le="300"`, 3},
		{"herokunix_releases_total", `result="succeeded"`, 1},
		{"herokunix_releases_total", `result="failed"`, 2},
		{"herokunix_push_bytes_total", ``, 1<<20 + 512},
		{"herokunix_push_blobs_skipped_total", ``, 3},
		{"herokunix_heroku_api_calls_total", `code="200",operation="release.list"`, 2},
		{"herokunix_heroku_api_calls_total", `code="429",operation="formation.docker-release"`, 1},
		{"herokunix_heroku_api_calls_total", `code="none",operation="app.info"`, 1},
		{"herokunix_webhook_events_total", `provider="github",status="accepted"`, 1},
		{"herokunix_webhook_events_total", `provider="github",status="unauthorized"`, 1},
		{"herokunix_webhook_reconciles_requested_total", ``, 3},
	} {
		s := sample{tc.name, tc.labels}
		got, ok := after[s]
		if !ok {
			t.Errorf("%s{%s} is not served", tc.name, tc.labels)
			continue
		}
		if d := got - before[s]; d != tc.delta {
			t.Errorf("%s{%s} went up by %g, want %g", tc.name, tc.labels, d, tc.delta)
		}
	}
	if got := after[sample{"herokunix_heroku_ratelimit_remaining", ""}]; got != 4321 {
		t.Errorf("herokunix_heroku_ratelimit_remaining = %g, want 4321", got)
	}
}

func TestNegativeValuesAreIgnored(t *testing.T) {
	url := startMetricsServer(t)
	before, err := scrape(url)
	if err != nil {
		t.Fatal(err)
	}
	metrics.Pushed(-5, -1)
	metrics.BuildFinished(metrics.ResultFailed, -time.Second)
	after, err := scrape(url)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []sample{
		{"herokunix_push_bytes_total", ""},
		{"herokunix_push_blobs_skipped_total", ""},
		{"herokunix_build_duration_seconds_count", ""},
	} {
		if after[s] != before[s] {
			t.Errorf("%s changed from %g to %g", s.name, before[s], after[s])
		}
	}
	if d := after[sample{"herokunix_builds_total", `result="failed"`}] - before[sample{"herokunix_builds_total", `result="failed"`}]; d != 1 {
		t.Errorf("a build with a bad duration is still counted: got %g, want 1", d)
	}
}
