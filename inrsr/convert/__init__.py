"""Official PyTorch checkpoints -> inrsr runs (`load` reads .pth without torch; one converter per model)."""
