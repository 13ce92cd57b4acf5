// Unit tests of krunbox's pure C++ logic, run by test/native.test.ts.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
