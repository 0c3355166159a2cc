module github.com/lockstepd/lockstep

go 1.26
