// Package kubetable fetches the server-side Table form of a resource list, so
// herokunix can show what `kubectl get` shows (printer columns included)
// without depending on a kubectl binary.
package kubetable

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/rest"
)

// tableAccept asks the API server for a meta.k8s.io/v1 Table, as kubectl does.
const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"

// Get lists a namespaced resource as a Table. wide includes priority>0 columns.
func Get(ctx context.Context, cfg *rest.Config, gvr schema.GroupVersionResource, namespace string) (*metav1.Table, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("building HTTP client: %w", err)
	}
	url := strings.TrimSuffix(cfg.Host, "/") + "/apis/" + gvr.Group + "/" + gvr.Version
	if namespace != "" {
		url += "/namespaces/" + namespace
	}
	url += "/" + gvr.Resource
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("building table request: %w", err)
	}
	req.Header.Set("Accept", tableAccept)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("listing %s as a table: %w", gvr.Resource, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("reading table response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("listing %s as a table: HTTP %d: %s", gvr.Resource, resp.StatusCode, body)
	}
	var t metav1.Table
	if err := json.Unmarshal(body, &t); err != nil {
		return nil, fmt.Errorf("decoding table: %w", err)
	}
	if t.Kind != "Table" {
		return nil, fmt.Errorf("server answered %q, not a Table", t.Kind)
	}
	return &t, nil
}

// Print writes t the way kubectl prints it: upper-case headers, aligned
// columns, priority>0 columns only when wide.
func Print(w io.Writer, t *metav1.Table, wide bool) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	var cols []int
	var headers []string
	for i, c := range t.ColumnDefinitions {
		if c.Priority > 0 && !wide {
			continue
		}
		cols = append(cols, i)
		headers = append(headers, strings.ToUpper(c.Name))
	}
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	for _, row := range t.Rows {
		cells := make([]string, 0, len(cols))
		for _, i := range cols {
			cells = append(cells, cell(t.ColumnDefinitions[i], row.Cells, i))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// cell formats one cell; dates become ages, as kubectl shows them.
func cell(def metav1.TableColumnDefinition, cells []any, i int) string {
	if i >= len(cells) || cells[i] == nil || cells[i] == "" {
		return "<none>"
	}
	if def.Type == "date" {
		if s, ok := cells[i].(string); ok {
			if ts, err := time.Parse(time.RFC3339, s); err == nil {
				return duration.HumanDuration(time.Since(ts))
			}
		}
	}
	return fmt.Sprint(cells[i])
}
