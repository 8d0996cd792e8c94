module github.com/icza/gaesession/v2/cloud

go 1.26.0

// The store and aelocal of this checkout. A published version of this
// module names a released version of github.com/icza/gaesession/v2 instead.
replace github.com/icza/gaesession/v2 => ../
