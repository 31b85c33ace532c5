#pragma once
// Eigen's Tensor module with the thread-pool device enabled. Our headers include Eigen only
// through here so that EIGEN_USE_THREADS is defined before the first Tensor include.

#if defined(EIGEN_CXX11_TENSOR_MODULE) && !defined(EIGEN_USE_THREADS)
#error "irepa: include <irepa/...> before <unsupported/Eigen/CXX11/Tensor>, or define EIGEN_USE_THREADS first (irepa needs Eigen::ThreadPoolDevice)"
#endif
#ifndef EIGEN_USE_THREADS
#define EIGEN_USE_THREADS
#endif

#include <Eigen/Core>
#include <unsupported/Eigen/CXX11/Tensor>
#include <unsupported/Eigen/CXX11/ThreadPool>
