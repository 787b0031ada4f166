// Included first by every generic header: they are compiled once per target
// (arch/instantiate.cpp), inside namespace fastsoftmax::FASTSOFTMAX_TARGET,
// so each target's translation unit gets its own copy of every inline
// function, and none compiled with one target's flags is shared with another.
#pragma once

#ifndef FASTSOFTMAX_TARGET
#error "define FASTSOFTMAX_TARGET (the target's namespace) before including generic code"
#endif
