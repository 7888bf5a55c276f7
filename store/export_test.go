package store

// RunBatch runs reservations and bindings as one group-commit batch, as the
// committer does when they arrive together (tests: the batch's composition
// does not depend on timing). It returns each member's result in order.
func (db *DB) RunBatch(reqs []ReserveRequest, binds []*Binding) ([]*Reservation, []error) {
	var batch []*pending
	for _, r := range reqs {
		r := r
		p := &pending{req: r, done: make(chan struct{})}
		if err := p.req.validate(); err != nil {
			p.err = err
			close(p.done)
			continue
		}
		batch = append(batch, p)
	}
	for _, b := range binds {
		batch = append(batch, &pending{bind: b, done: make(chan struct{})})
	}
	db.commitBatch(batch)
	var res []*Reservation
	var errs []error
	for _, p := range batch {
		res = append(res, p.res)
		errs = append(errs, p.err)
	}
	return res, errs
}
