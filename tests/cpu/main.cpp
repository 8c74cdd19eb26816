// Catch2 entry point of the CPU test executable.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
