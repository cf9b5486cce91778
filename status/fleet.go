package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/meshwaf/meshwaf/xds"
)

// Each replica serves only the agents connected to it, so a WAFPolicy's
// agent counts need every replica's view. Every replica publishes its view
// as one data key of a shared ConfigMap (Publisher), and the leader adds
// the fresh ones to its own before writing status (fleetConvergence). One
// ConfigMap with a key per replica, because RBAC can then limit the
// control plane to that one object by name (listing objects cannot be
// limited so), and each replica's merge patch touches only its own key.

// ReportsConfigMap is the ConfigMap, in the control plane's namespace, that
// holds each replica's report.
const ReportsConfigMap = "meshwaf-xds-convergence"

const (
	// reportInterval is how often a replica checks whether its view
	// changed, and reportRenewal how often it writes an unchanged one, so
	// that the leader can tell a live replica from a gone one.
	reportInterval = time.Second
	reportRenewal  = 10 * time.Second
	// reportStaleAfter is when the leader stops counting a report that was
	// not renewed (its replica stopped without removing it, or cannot
	// reach the API server; its agents reconnect elsewhere), and
	// reportForgetAfter when it deletes it. Clocks of replicas may differ
	// by a few seconds; these leave room.
	reportStaleAfter  = 3 * reportRenewal
	reportForgetAfter = 10 * time.Minute
)

// Report is one replica's view of its agents: how many are connected, and
// per policy how many applied it.
type Report struct {
	Renewed  time.Time                        `json:"renewed"`
	Agents   int                              `json:"agents"`
	Policies map[string]xds.PolicyConvergence `json:"policies"`
}

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// ConfigMaps is the client for the control plane's namespace.
	ConfigMaps corev1client.ConfigMapInterface
	// Replica is this replica's name (its leader election identity), the
	// data key it writes.
	Replica string
	Fleet   FleetView
	Logger  *slog.Logger
}

// Publisher keeps this replica's report in ReportsConfigMap. Run it on
// every replica.
type Publisher struct {
	cfg     PublisherConfig
	last    Report // Renewed unset
	written time.Time
}

// NewPublisher returns a Publisher.
func NewPublisher(cfg PublisherConfig) *Publisher {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Publisher{cfg: cfg}
}

// Start publishes until ctx is done, then removes this replica's report,
// so that the leader stops counting its agents at once.
func (p *Publisher) Start(ctx context.Context) error {
	ticker := time.NewTicker(reportInterval)
	defer ticker.Stop()
	for {
		p.publish(ctx)
		select {
		case <-ctx.Done():
			removeCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := patchReport(removeCtx, p.cfg.ConfigMaps, p.cfg.Replica, nil); err != nil && !apierrors.IsNotFound(err) {
				p.cfg.Logger.Warn("removing this replica's agent report", "configmap", ReportsConfigMap, "error", err)
			}
			return nil
		case <-ticker.C:
		}
	}
}

func (p *Publisher) publish(ctx context.Context) {
	view := Report{Agents: len(p.cfg.Fleet.Agents()), Policies: compactView(p.cfg.Fleet.Convergence())}
	if reflect.DeepEqual(view, p.last) && time.Since(p.written) < reportRenewal {
		return
	}
	report := view
	report.Renewed = time.Now().UTC()
	if err := patchReport(ctx, p.cfg.ConfigMaps, p.cfg.Replica, &report); err != nil {
		if ctx.Err() == nil {
			p.cfg.Logger.Error("publishing this replica's agent report", "configmap", ReportsConfigMap, "error", err)
		}
		return
	}
	p.last, p.written = view, time.Now()
}

// compactView drops what the leader does not use (the pending agents'
// names), so that a report stays small for a large fleet.
func compactView(view map[string]xds.PolicyConvergence) map[string]xds.PolicyConvergence {
	out := make(map[string]xds.PolicyConvergence, len(view))
	for name, c := range view {
		c.Pending = nil
		out[name] = c
	}
	return out
}

// patchReport sets (or, with a nil report, removes) one replica's key,
// creating the ConfigMap if it does not exist yet.
func patchReport(ctx context.Context, cms corev1client.ConfigMapInterface, replica string, report *Report) error {
	var value any // JSON null removes the key
	if report != nil {
		raw, err := json.Marshal(report)
		if err != nil {
			return err
		}
		value = string(raw)
	}
	patch, err := json.Marshal(map[string]any{"data": map[string]any{replica: value}})
	if err != nil {
		return err
	}
	_, err = cms.Patch(ctx, ReportsConfigMap, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "meshwaf-xds"})
	if !apierrors.IsNotFound(err) || report == nil {
		return err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: ReportsConfigMap, Labels: map[string]string{"app.kubernetes.io/part-of": "meshwaf"}},
		Data:       map[string]string{replica: value.(string)},
	}
	_, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: "meshwaf-xds"})
	if apierrors.IsAlreadyExists(err) { // another replica created it first
		_, err = cms.Patch(ctx, ReportsConfigMap, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "meshwaf-xds"})
	}
	return err
}

// readReports returns the other replicas' reports, and deletes those not
// renewed for reportForgetAfter. A key it cannot read is left out, and
// named in the error, with the others returned.
func readReports(ctx context.Context, cms corev1client.ConfigMapInterface, self string, now time.Time) (map[string]Report, error) {
	cm, err := cms.Get(ctx, ReportsConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	reports := map[string]Report{}
	var errs []error
	for replica, raw := range cm.Data {
		if replica == self {
			continue
		}
		var r Report
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			errs = append(errs, fmt.Errorf("%s: key %s: %w", ReportsConfigMap, replica, err))
			continue
		}
		if now.Sub(r.Renewed) > reportForgetAfter {
			errs = append(errs, patchReport(ctx, cms, replica, nil))
			continue
		}
		reports[replica] = r
	}
	return reports, errors.Join(errs...)
}

// fleetConvergence adds to this replica's view, per policy, the agents of
// every other replica whose report is fresh. An agent of a replica that
// serves another version of the policy, or none (it has not rebuilt yet,
// or has already), has not applied this one: it counts as pending.
func fleetConvergence(own map[string]xds.PolicyConvergence, others map[string]Report, now time.Time) map[string]xds.PolicyConvergence {
	out := maps.Clone(own)
	// In a fixed order, so that the rejections listed do not change
	// order, and so rewrite the status, from one reconciliation to the next.
	for _, replica := range slices.Sorted(maps.Keys(others)) {
		r := others[replica]
		if now.Sub(r.Renewed) > reportStaleAfter {
			continue
		}
		for name, c := range out {
			c.Desired += r.Agents
			o, ok := r.Policies[name]
			if !ok || o.Version != c.Version {
				c.PendingCount += r.Agents
				out[name] = c
				continue
			}
			c.Applied += o.Applied
			c.Rejecting += o.Rejecting
			c.PendingCount += o.PendingCount
			room := max(0, xds.MaxListedAgents-len(c.Rejected))
			c.Rejected = append(slices.Clip(c.Rejected), o.Rejected[:min(len(o.Rejected), room)]...)
			out[name] = c
		}
	}
	return out
}
