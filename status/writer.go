package status

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/snapshot"
	"github.com/meshwaf/meshwaf/store"
	"github.com/meshwaf/meshwaf/xds"
)

// FleetView is the part of the xDS server the writer reads.
type FleetView interface {
	Current() *snapshot.Snapshot
	Convergence() map[string]xds.PolicyConvergence
	Agents() []xds.AgentStatus
}

// WriterConfig configures a Writer.
type WriterConfig struct {
	Client dynamic.Interface
	Fleet  FleetView
	// Store holds each policy's status as the cluster has it now.
	Store  *store.Store
	Logger *slog.Logger
	// Interval between status reconciliations. Default 1s.
	Interval time.Duration
	// Reports, when set, is the control plane namespace's ConfigMaps,
	// where the other replicas publish their agents (Publisher); Replica
	// is this replica's report key. The status then counts the whole
	// fleet, not only the agents connected to the leader.
	Reports corev1client.ConfigMapInterface
	Replica string
}

// Writer keeps WAFPolicy statuses up to date. Run it only as the leader.
type Writer struct {
	cfg WriterConfig
	// written remembers the last status patched per policy, so a patch is
	// not repeated while the informer has not yet reported it back.
	written map[store.ObjectRef]patched
}

type patched struct {
	status v1alpha1.WAFPolicyStatus
	at     time.Time
}

// informerLag bounds how long a written status may take to come back
// through the informer before it is written again.
const informerLag = 5 * time.Second

// NewWriter returns a Writer.
func NewWriter(cfg WriterConfig) *Writer {
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Writer{cfg: cfg, written: map[store.ObjectRef]patched{}}
}

// Start reconciles statuses until ctx is done.
func (w *Writer) Start(ctx context.Context) error {
	ticker := time.NewTicker(w.cfg.Interval)
	defer ticker.Stop()
	for {
		w.reconcile(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

func (w *Writer) reconcile(ctx context.Context) {
	snap := w.cfg.Fleet.Current()
	if snap == nil {
		return
	}
	convergence := w.cfg.Fleet.Convergence()
	if w.cfg.Reports != nil {
		now := time.Now()
		others, err := readReports(ctx, w.cfg.Reports, w.cfg.Replica, now)
		if err != nil && ctx.Err() == nil {
			w.cfg.Logger.Error("reading the other replicas' agent reports", "configmap", ReportsConfigMap, "error", err)
		}
		convergence = fleetConvergence(convergence, others, now)
	}
	txn := w.cfg.Store.Read()
	for _, p := range snap.Policies {
		record := txn.Policy(p.Ref)
		if record == nil || record.Source != store.SourceKubernetes {
			continue
		}
		desired := Desired(p, convergence[p.Ref.NamespacedName()], record.Status)
		if equality.Semantic.DeepEqual(desired, record.Status) {
			continue
		}
		if last, ok := w.written[p.Ref]; ok && time.Since(last.at) < informerLag &&
			equality.Semantic.DeepEqual(desired, last.status) {
			continue
		}
		if err := w.patch(ctx, p.Ref, desired); err != nil {
			if !apierrors.IsNotFound(err) && ctx.Err() == nil {
				w.cfg.Logger.Error("writing policy status", "policy", p.Ref.NamespacedName(), "error", err)
			}
			continue
		}
		w.written[p.Ref] = patched{status: desired, at: time.Now()}
	}
}

func (w *Writer) patch(ctx context.Context, ref store.ObjectRef, status v1alpha1.WAFPolicyStatus) error {
	body, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	_, err = w.cfg.Client.Resource(v1alpha1.GroupVersionResource).Namespace(ref.Namespace).
		Patch(ctx, ref.Name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: "meshwaf-xds"}, "status")
	return err
}
