#pragma once
// Version of the native core, and of the shared-memory layout (bumped on any layout change).
#define SAGE_NATIVE_VERSION "0.1.0"
#define SAGE_LAYOUT_VERSION 2
