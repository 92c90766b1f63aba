"""AniClipart parity: mesh, ARAP, trajectories and the skeleton term against ../shared/parity/aniclipart.

Every setting comes from the fixture's manifest.json; tolerances are the fixture README's (its
reference ran in float32 with float64 solves, we solve in float64 throughout, which it measured
to differ by up to 2.3e-4 px). The contour is compared from the fixture's silhouette (the raster
itself only loosely: a different rasteriser moves the outline by up to a pixel).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from comfyui_animate_suite.svg import contour, mesh
from comfyui_animate_suite.svg.arap import ArapSolver
from comfyui_animate_suite.svg.document import load_svg
from comfyui_animate_suite.svg.paths import layout_drawing
from comfyui_animate_suite.svg.raster import rasterise
from comfyui_animate_suite.svg.rig import RigSettings, deform, rig_from_mesh
from comfyui_animate_suite.svg.rigfiles import read_keypoint_file, read_skeleton_file
from comfyui_animate_suite.svg.skeleton import bone_lengths, skeleton_length_loss
from comfyui_animate_suite.svg.trajectories import bezier_poses, frame_to_pose, init_bezier, sample_times


@pytest.fixture(scope="module")
def fixture(shared_dir):
    folder = shared_dir / "parity" / "aniclipart"
    if not (folder / "manifest.json").is_file():
        pytest.skip("../shared/parity/aniclipart is absent")
    manifest = json.loads((folder / "manifest.json").read_text())
    return folder, manifest, manifest["settings"]


@pytest.fixture(scope="module")
def mesh_npz(fixture):
    return np.load(fixture[0] / "mesh.npz")


def _load(fixture, name):
    return torch.load(fixture[0] / name, weights_only=True)


def _clipart_files(shared_dir, manifest):
    name = manifest["clipart"]
    folder = shared_dir / "data" / "clipart" / name
    return folder / f"{name}_scaled.svg", folder / f"{name}_keypoint_scaled.svg", folder / f"{name}_skeleton.txt"


# ----------------------------------------------------------------------------- unit 1: mesh


def test_contour_from_the_silhouette_equals_opencv(fixture, mesh_npz):
    _, manifest, settings = fixture
    contour_settings = manifest["contour"]
    foreground = mesh_npz["silhouette_512"] <= contour_settings["threshold"]
    outline = contour.largest_outline(foreground, contour_settings["approxPolyDP_epsilon"])
    np.testing.assert_array_equal(outline, mesh_npz["contour_px_512"])
    scale = contour_settings["render_size"] / settings["render_size_h"]
    np.testing.assert_array_equal((outline.astype(np.float32) / scale).astype(np.float32), mesh_npz["contour_256"])


def test_our_raster_and_contour_are_close_to_cairo(fixture, mesh_npz, shared_dir):
    _, manifest, settings = fixture
    art, _, _ = _clipart_files(shared_dir, manifest)
    drawing = load_svg(art, settings["render_size_h"])
    layout, points = layout_drawing(drawing)
    size = manifest["contour"]["render_size"]
    alpha = rasterise(layout, points, size=size)[0, ..., 3].numpy() * 255
    assert np.abs(alpha - mesh_npz["raster_alpha_512"]).mean() / 255 < 0.01
    import shapely

    ours = contour.drawing_outline(drawing, settings["boundary_simplify_level"], size // settings["render_size_h"])
    distance = shapely.hausdorff_distance(shapely.Polygon(ours), shapely.Polygon(mesh_npz["contour_256"]))
    assert distance <= 1.5, "the outline from our rasteriser moved by more than 1.5 px"


def test_dilation_matches_shapely_reference(fixture, mesh_npz, shared_dir):
    folder, manifest, _ = fixture
    ring, calls = contour.dilate_until_inside(mesh_npz["contour_256"], mesh_npz["svg_points_for_dilation"])
    assert calls == manifest["contour"]["dilation_buffer_calls"]
    assert ring.shape == mesh_npz["contour_dilated"].shape
    np.testing.assert_allclose(ring, mesh_npz["contour_dilated"], atol=1e-6, rtol=0)
    # The points our parser finds in the same SVG need the same dilation.
    our_points = load_svg(folder / "init.svg").all_points()
    ring_ours, calls_ours = contour.dilate_until_inside(mesh_npz["contour_256"], our_points)
    assert calls_ours == calls
    np.testing.assert_allclose(ring_ours, ring, atol=1e-6, rtol=0)


def test_triangulation_matches_triangle_output(fixture, mesh_npz):
    pytest.importorskip("triangle")  # AniClipart's exact mesh; the default mesher is the built-in one
    _, manifest, settings = fixture
    assert manifest["triangle_flags"] == f"pq{settings['min_tri_degree']}a{settings['max_tri_area']}"
    keypoints = mesh_npz["keypoints"]
    outline = mesh_npz["tri_input_vertices"][: len(mesh_npz["tri_input_vertices"]) - len(keypoints)]
    np.testing.assert_array_equal(np.concatenate([outline, keypoints]), mesh_npz["tri_input_vertices"])
    result = mesh.triangulate(outline, keypoints, settings["max_tri_area"], settings["min_tri_degree"], "triangle")
    np.testing.assert_array_equal(result.triangles, mesh_npz["triangles"])
    np.testing.assert_allclose(result.vertices, mesh_npz["vertices"], atol=1e-9, rtol=0)
    np.testing.assert_array_equal(result.handle_index, mesh_npz["handle_index"])
    np.testing.assert_array_equal(result.edges, mesh_npz["edges"])


def test_keypoints_are_read_as_the_reference_reads_them(fixture, mesh_npz, shared_dir):
    _, manifest, settings = fixture
    _, keypoint_file, skeleton_file = _clipart_files(shared_dir, manifest)
    keypoints = read_keypoint_file(keypoint_file, settings["render_size_h"])
    np.testing.assert_allclose(keypoints, mesh_npz["keypoints"], atol=1e-9, rtol=0)
    bones = read_skeleton_file(skeleton_file, len(keypoints))
    np.testing.assert_array_equal(bones, _load(fixture, "skeleton.pt")["skeleton"].numpy())


def test_parsed_paths_match_diffvg(fixture, mesh_npz):
    folder, _, _ = fixture
    layout, points = layout_drawing(load_svg(folder / "init_subdiv.svg"))
    np.testing.assert_array_equal(points.numpy(), mesh_npz["path_points"])
    np.testing.assert_array_equal(np.concatenate(layout.subpath_control_points), mesh_npz["path_num_control_points"])
    np.testing.assert_array_equal([len(c) for c in layout.subpath_control_points], mesh_npz["path_num_segments"])
    np.testing.assert_array_equal(layout.subpath_closed, mesh_npz["path_is_closed"])
    np.testing.assert_array_equal(layout.subpath_offsets, mesh_npz["cum_sizes"][: len(layout.subpath_offsets)])
    np.testing.assert_allclose(layout.group_fill.numpy(), mesh_npz["group_fill_rgba"], atol=1e-7)
    np.testing.assert_array_equal(layout.group_even_odd.numpy(), mesh_npz["group_use_even_odd"])


def test_subdivision_splits_at_every_mesh_edge_crossing(fixture, mesh_npz):
    folder, _, settings = fixture
    assert settings["need_subdivide"]
    subdivided = mesh.subdivide(load_svg(folder / "init.svg"), mesh_npz["vertices"], mesh_npz["edges"])
    layout, points = layout_drawing(subdivided)
    assert points.shape == mesh_npz["path_points"].shape
    np.testing.assert_array_equal(np.concatenate(layout.subpath_control_points), mesh_npz["path_num_control_points"])
    np.testing.assert_allclose(points.numpy(), mesh_npz["path_points"], atol=1e-4, rtol=0)


def test_binding_is_the_first_containing_triangle(mesh_npz):
    face_index, bary = mesh.bind_points(mesh_npz["path_points"], mesh_npz["vertices"], mesh_npz["triangles"])
    np.testing.assert_array_equal(face_index, mesh_npz["face_index"])
    np.testing.assert_allclose(bary, mesh_npz["bary_coord"], atol=1e-9, rtol=0)


# ----------------------------------------------------------------------------- unit 2: ARAP


@pytest.fixture(scope="module")
def arap(fixture):
    data = _load(fixture, "arap.pt")
    assert data["arap_weight"] == fixture[2]["arap_weight"]
    solver = ArapSolver.build(data["vertices"].double().numpy(), data["faces"].numpy(), data["handle_index"].numpy(),
                              fixture[2]["arap_weight"])
    return data, solver


def test_arap_precomputation_matches(arap):
    data, solver = arap
    assert torch.equal(solver.edges, data["edges"])
    neighbours = solver.neighbours.double()
    neighbours[neighbours < 0] = float("nan")
    assert torch.allclose(neighbours, data["edge_neighbours"].double(), equal_nan=True)
    # The reference stores its fits in float32.
    torch.testing.assert_close(solver.fits, data["g_product"].double(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", ["mlp_step0", "wide", "random_offsets"])
def test_arap_solve_and_warp(arap, mesh_npz, fixture, case):
    data, solver = arap
    assert case in fixture[1]["arap"]["cases"]
    targets = data[f"{case}_targets"]
    torch.testing.assert_close(solver.first_step(targets), data[f"{case}_v_prime"].double(), atol=1e-3, rtol=0)
    vertices = solver.solve(targets)
    torch.testing.assert_close(vertices, data[f"{case}_v_2prime"], atol=1e-3, rtol=0)
    faces = data["faces"]
    face_index = torch.from_numpy(mesh_npz["face_index"])
    bary = torch.from_numpy(mesh_npz["bary_coord"])
    warped = (vertices[:, faces[face_index]] * bary[None, :, :, None]).sum(2).float()
    torch.testing.assert_close(warped, data[f"{case}_warped_path_points"], atol=1e-3, rtol=0)


def test_arap_gradient_with_respect_to_the_handles(arap, fixture):
    data, solver = arap
    case = fixture[1]["arap"]["grad_case"]
    targets = data[f"{case}_targets"].clone().requires_grad_(True)
    (solver.solve(targets) * data["grad_weight"]).sum().backward()
    torch.testing.assert_close(targets.grad, data["grad_targets"], atol=2e-3, rtol=0)


# ----------------------------------------------------------------------------- unit 3: trajectories


@pytest.fixture(scope="module")
def fixture_rig(fixture, mesh_npz):
    """Our rig built on the fixture's mesh (Triangle's output), so whole chains can be compared."""
    folder, _, settings = fixture
    layer_mesh = mesh.Mesh(mesh_npz["vertices"], mesh_npz["triangles"], mesh_npz["handle_index"])
    rig_settings = RigSettings(max_tri_area=settings["max_tri_area"], min_tri_angle=settings["min_tri_degree"],
                               arap_weight=settings["arap_weight"], subdivide=settings["need_subdivide"])
    return rig_from_mesh(load_svg(folder / "init.svg"), mesh_npz["keypoints"], layer_mesh, settings=rig_settings)


def test_bezier_initialisation_from_the_recorded_draws(fixture, mesh_npz):
    _, manifest, settings = fixture
    trajectories, draws = _load(fixture, "trajectories.pt"), _load(fixture, "mlp.pt")
    size = (settings["render_size_w"], settings["render_size_h"])
    cases = {"ctrl_wide": ("wide_draws", manifest["trajectories"]["wide_radius"]),
             "ctrl_clip": ("clip_draws", manifest["trajectories"]["clip_radius"])}
    for target, (draw_key, radius) in cases.items():
        control = init_bezier(mesh_npz["keypoints"], radius, *size, draws=draws[draw_key].tolist())
        torch.testing.assert_close(control, trajectories[target], atol=1e-9, rtol=0)
    initial = init_bezier(mesh_npz["keypoints"], settings["bezier_radius"], *size, draws=draws["init_draws"].tolist())
    torch.testing.assert_close(initial.reshape(-1, 2), draws["init_points"], atol=1e-9, rtol=0)


def _trajectory_cases(manifest):
    loops = manifest["trajectories"]["loop_nums"]
    return [(name, n) for name in ("mlp", "wide") for n in loops] + [("clip", manifest["settings"]["loop_num"])]


def test_sampling_looping_and_whole_chain(fixture, fixture_rig):
    _, manifest, settings = fixture
    trajectories = _load(fixture, "trajectories.pt")
    num_frames = manifest["trajectories"]["num_frames"]
    assert num_frames == settings["num_frames"]
    for name, loop_num in _trajectory_cases(manifest):
        prefix = f"{name}_loop{loop_num}"
        ts = sample_times(num_frames, loop_num)
        assert ts.dtype == trajectories[f"{prefix}_ts"].dtype
        torch.testing.assert_close(ts, trajectories[f"{prefix}_ts"], atol=0, rtol=0)
        poses = bezier_poses(trajectories[f"ctrl_{name}"], ts)
        torch.testing.assert_close(poses, trajectories[f"{prefix}_unique_poses"], atol=1e-4, rtol=0)
        mapping = frame_to_pose(len(ts), loop_num)
        assert torch.equal(mapping, trajectories[f"{prefix}_frame_to_pose"])
        assert len(mapping) == trajectories[f"{prefix}_num_output_frames"]
        torch.testing.assert_close(poses[mapping], trajectories[f"{prefix}_keypoints_per_frame"], atol=1e-4, rtol=0)
        warped = deform(fixture_rig, poses)
        torch.testing.assert_close(warped, trajectories[f"{prefix}_warped_path_points_unique"], atol=1e-3, rtol=0)


# ----------------------------------------------------------------------------- unit 4: skeleton term


def test_skeleton_length_term(fixture, mesh_npz):
    _, _, settings = fixture
    data = _load(fixture, "skeleton.pt")
    assert data["skeleton_weight"] == settings["skeleton_weight"]
    rest = bone_lengths(torch.from_numpy(mesh_npz["keypoints"]), data["skeleton"]).float()
    torch.testing.assert_close(rest, data["init_lengths"], atol=0, rtol=1e-6)
    cases = sorted(key[: -len("_poses")] for key in data if key.endswith("_poses"))
    assert cases
    for prefix in cases:
        poses = data[f"{prefix}_poses"].clone().requires_grad_(True)
        loss = skeleton_length_loss(poses, data["skeleton"], data["init_lengths"])
        torch.testing.assert_close(loss, data[f"{prefix}_loss"], rtol=1e-5, atol=0)
        weighted = settings["skeleton_weight"] * loss
        torch.testing.assert_close(weighted, data[f"{prefix}_weighted_loss"], rtol=1e-5, atol=0)
        weighted.backward()
        torch.testing.assert_close(poses.grad, data[f"{prefix}_grad_weighted"], rtol=1e-4, atol=1e-4)

