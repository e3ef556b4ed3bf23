"""The detailer: find regions (faces, hands, the demo's shapes) in a finished picture and repaint each
at full resolution, as ADetailer does (modules/detailer/*)."""
