/* built by scripts/build-web from web/ */
