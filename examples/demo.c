#include <stdio.h>
#include "cfutures.h"
int main(void) { printf("%s\n", cf_version_string()); return 0; }
