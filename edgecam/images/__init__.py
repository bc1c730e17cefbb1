"""Image files from outside (uploads, dataset folders): format and size read from the
header before anything is decoded, limits in pixels and bytes, and the (reduced) decode.

Shared by the web app (uploads) and ``edgecam train`` (dataset folders), so both refuse
the same files for the same reasons. numpy and OpenCV only: the daemon imports it.
"""
