package main

// The Connect CA, peering and exported-services data functions: caRoots,
// caLeaf, peerings and exportedServices, each following the consul-template
// v0.41.1 dependency of the same data (dependency/connect_ca.go,
// connect_leaf.go, consul_peering.go, consul_exported_services.go).

import (
	"context"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/berth/berth/pkg/query"
	"github.com/hashicorp/consul/api"
)

// CARoot is one Connect CA root as caRoots gives it: the fields of the
// consul api release consul-template v0.41.1 is built with (api v1.32:
// no NotBefore/NotAfter, which toJSON would otherwise write).
type CARoot struct {
	ID          string
	Name        string
	RootCertPEM string `json:"RootCert"`
	Active      bool
	CreateIndex uint64
	ModifyIndex uint64
}

// caRootsDep is caRoots: the agent's Connect CA roots.
type caRootsDep struct{}

func (caRootsDep) String() string { return "connect.caroots" }

func (d caRootsDep) run(ctx context.Context, e *env, deliver func(any)) {
	loopConsul(ctx, e, query.Query{Name: d.String()}, func(q *api.QueryOptions) ([]*CARoot, *api.QueryMeta, error) {
		l, meta, err := e.q.API().Agent().ConnectCARoots(q)
		if err != nil {
			return nil, nil, err
		}
		out := make([]*CARoot, 0, len(l.Roots))
		for _, r := range l.Roots {
			out = append(out, &CARoot{ID: r.ID, Name: r.Name, RootCertPEM: r.RootCertPEM, Active: r.Active, CreateIndex: r.CreateIndex, ModifyIndex: r.ModifyIndex})
		}
		return out, meta, nil
	}, deliver)
}

// caLeafDep is caLeaf SERVICE: the agent's leaf certificate for a service.
type caLeafDep struct{ service string }

func (d caLeafDep) String() string { return "connect.caleaf(" + d.service + ")" }

func (d caLeafDep) run(ctx context.Context, e *env, deliver func(any)) {
	loopConsul(ctx, e, query.Query{Name: d.String()}, func(q *api.QueryOptions) (*api.LeafCert, *api.QueryMeta, error) {
		return e.q.API().Agent().ConnectCALeaf(d.service, q)
	}, deliver)
}

// Peering is one cluster peering as peerings gives it (consul-template's
// dependency.Peering fields).
type Peering struct {
	ID                  string
	Name                string
	Partition           string
	Meta                map[string]string
	PeeringState        string
	PeerID              string
	PeerServerName      string
	PeerServerAddresses []string
	StreamStatus        PeeringStreamStatus
	Remote              PeeringRemoteInfo
}

// PeeringStreamStatus is a peering's replication state.
type PeeringStreamStatus struct {
	ImportedServices []string
	ExportedServices []string
	LastHeartbeat    *time.Time
	LastReceive      *time.Time
	LastSend         *time.Time
}

// PeeringRemoteInfo is where the peer is.
type PeeringRemoteInfo struct {
	Partition  string
	Datacenter string
}

// peeringsDep is peerings: the cluster's peerings, ordered by state, then
// partition, then name (consul_peering.go ByPeer).
type peeringsDep struct{}

func (peeringsDep) String() string { return "list.peerings" }

func (d peeringsDep) run(ctx context.Context, e *env, deliver func(any)) {
	loopConsul(ctx, e, query.Query{Name: d.String()}, func(q *api.QueryOptions) ([]*Peering, *api.QueryMeta, error) {
		l, meta, err := e.q.API().Peerings().List(ctx, q)
		if err != nil {
			return nil, nil, err
		}
		out := make([]*Peering, 0, len(l))
		for _, p := range l {
			out = append(out, &Peering{ID: p.ID, Name: p.Name, Partition: p.Partition, Meta: p.Meta, PeeringState: string(p.State),
				PeerID: p.PeerID, PeerServerName: p.PeerServerName, PeerServerAddresses: p.PeerServerAddresses,
				StreamStatus: PeeringStreamStatus{ImportedServices: p.StreamStatus.ImportedServices, ExportedServices: p.StreamStatus.ExportedServices,
					LastHeartbeat: p.StreamStatus.LastHeartbeat, LastReceive: p.StreamStatus.LastReceive, LastSend: p.StreamStatus.LastSend},
				Remote: PeeringRemoteInfo{Partition: p.Remote.Partition, Datacenter: p.Remote.Datacenter}})
		}
		sort.SliceStable(out, func(i, j int) bool {
			a, b := out[i], out[j]
			if a.PeeringState != b.PeeringState {
				return a.PeeringState < b.PeeringState
			}
			if a.Partition != b.Partition {
				return a.Partition < b.Partition
			}
			return a.Name < b.Name
		})
		return out, meta, nil
	}, deliver)
}

// ExportedService is one service exported to peers or partitions, as
// exportedServices gives it (consul-template's dependency.ExportedService:
// only Service and Consumers are filled).
type ExportedService struct {
	Service   string
	Partition string
	Namespace string
	Consumers ResolvedConsumers
}

// ResolvedConsumers are who an exported service is exported to.
type ResolvedConsumers struct {
	Peers      []string
	Partitions []string
}

// exportedServicesDep is exportedServices [PARTITION], sorted by service.
type exportedServicesDep struct{ partition string }

func (d exportedServicesDep) String() string {
	if d.partition == "" {
		return "list.exportedServices"
	}
	return "list.exportedServices(" + d.partition + ")"
}

func (d exportedServicesDep) run(ctx context.Context, e *env, deliver func(any)) {
	loopConsul(ctx, e, query.Query{Name: d.String()}, func(q *api.QueryOptions) ([]ExportedService, *api.QueryMeta, error) {
		if d.partition != "" {
			q.Partition = d.partition
		}
		l, meta, err := e.q.API().ExportedServices(q)
		if err != nil {
			return nil, nil, err
		}
		out := make([]ExportedService, 0, len(l))
		for _, s := range l {
			out = append(out, ExportedService{Service: s.Service, Consumers: ResolvedConsumers{
				Peers: append([]string{}, s.Consumers.Peers...), Partitions: append([]string{}, s.Consumers.Partitions...)}})
		}
		slices.SortStableFunc(out, func(a, b ExportedService) int { return strings.Compare(a.Service, b.Service) })
		return out, meta, nil
	}, deliver)
}
